"""Build a person's access package as a plaintext ZIP, for staff work.

For the cases the portal cannot serve: a patient without an account, a regulator's inquiry, a
package handed over in person. The ZIP is the same one the portal offers (the same builder),
not encrypted: keep it on an encrypted disk and delete it once delivered. Audited as
`export.staff_built` with the row count and checksum.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.services import subject_find
from core import crypto
from core.audit import Actor
from core.sources import SourceMapError
from dsar import services
from dsar.export import ExportError

ACTOR = Actor("system", "export_subject")


class Command(BaseCommand):
    help = (
        "Write the access package of the data subject with this e-mail address to a ZIP file "
        "(data.json, schema.json, one CSV per table, index.html). Plaintext: handle it as "
        "sensitive personal information."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email", help="the data subject's e-mail address (exact match)")
        parser.add_argument("--out", required=True, help="path of the ZIP file to write")
        parser.add_argument(
            "--language",
            choices=[code for code, _name in settings.LANGUAGES],
            default="",
            help="language of index.html and the labels (default: the subject's)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        out = Path(options["out"]).expanduser()
        if out.is_dir():
            raise CommandError(f"{out} is a folder: give the path of the ZIP file to write.")
        if not out.parent.is_dir():
            raise CommandError(f"Cannot write {out}: the folder {out.parent} does not exist.")
        subject = subject_find(email=options["email"])
        if subject is None:
            raise CommandError("No data subject has this e-mail address.")
        if subject.is_erased or crypto.subject_key_is_destroyed(subject.key_id):
            raise CommandError(f"{subject.reference} was erased: there is nothing to export.")
        try:
            result = services.export_to_file(
                subject=subject, out=out, actor=ACTOR, language=options["language"]
            )
        except PermissionError:
            raise CommandError(f"Cannot write {out}: permission denied.") from None
        except OSError as exc:
            raise CommandError(f"Cannot write {out}: {exc.strerror or exc}.") from None
        except (ExportError, SourceMapError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Wrote {result.path}: {subject.reference}, {result.rows} row(s), {result.size} bytes, "
                f"SHA-256 {result.sha256}. It is not encrypted: delete it once delivered."
            )
        )
