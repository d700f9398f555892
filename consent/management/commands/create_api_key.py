from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from consent.apikeys import CONSENT_CHECK, SCOPES, api_key_create
from core.audit import Actor


class Command(BaseCommand):
    help = "Create an API key for a product service account and print it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the service account, e.g. 'app-backend'")
        parser.add_argument(
            "--scope",
            action="append",
            dest="scopes",
            choices=sorted(SCOPES),
            help=f"repeatable; default {CONSENT_CHECK}",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            key, plaintext = api_key_create(
                name=options["name"],
                scopes=options["scopes"] or [CONSENT_CHECK],
                actor=Actor("command", "create_api_key"),
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(
            _("API key %(prefix)s for %(name)s, scopes: %(scopes)s")
            % {"prefix": key.prefix, "name": key.name, "scopes": ", ".join(key.scopes)}
        )
        self.stdout.write(plaintext)
        self.stdout.write(_("Store it now: only its hash is kept, so it cannot be shown again."))
