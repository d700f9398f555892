from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.audit import Actor
from retention import backups
from retention.backup_file import BackupError
from retention.models import Backup

COMMAND = Actor("system", "backup")


class Command(BaseCommand):
    help = (
        "Back up the main and product databases (never the key store), encrypted with "
        "QUANYI_BACKUP_KEY, and verify them; or rotate, verify or list the catalogue."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        what = parser.add_mutually_exclusive_group()
        what.add_argument("--rotate", action="store_true", help="delete expired backups (nothing is taken)")
        what.add_argument("--verify", metavar="ID", help="read a backup back and check both checksums")
        what.add_argument("--list", action="store_true", help="show the catalogue")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["rotate"]:
                self._rotate()
            elif options["verify"]:
                self._verify(options["verify"])
            elif options["list"]:
                self._list()
            else:
                self._take()
        except BackupError as exc:
            raise CommandError(str(exc)) from None

    def _take(self) -> None:
        taken = backups.backup_take(actor=COMMAND)
        for backup in taken:
            self._line(backup)
        failed = [b for b in taken if b.status == Backup.Status.FAILED]
        if failed:
            raise CommandError("Backup incomplete: " + "; ".join(f"{b.database}: {b.detail}" for b in failed))
        self.stdout.write(self.style.SUCCESS(f"Backup set {taken[0].set_id} taken and verified."))

    def _rotate(self) -> None:
        deleted = backups.backups_rotate(actor=COMMAND)
        for backup in deleted:
            self.stdout.write(f"deleted {backup.pk} {backup.database} taken {backup.taken_at:%Y-%m-%d %H:%M}")
        self.stdout.write(self.style.SUCCESS(f"Rotation done: {len(deleted)} expired backup(s) deleted."))

    def _verify(self, backup_id: str) -> None:
        backup = backups.backup_verify(backup=backups.backup_find(backup_id), actor=COMMAND)
        if backup.detail:
            raise CommandError(
                f"Backup {backup.pk} ({backup.database}) failed verification: {backup.detail}."
            )
        self.stdout.write(
            self.style.SUCCESS(f"Backup {backup.pk} ({backup.database}) verified: both checksums match.")
        )

    def _list(self) -> None:
        rows = Backup.objects.order_by("-taken_at", "database")
        if not rows:
            self.stdout.write("No backups catalogued.")
        for backup in rows:
            self._line(backup)

    def _line(self, backup: Backup) -> None:
        self.stdout.write(
            f"{backup.pk}  set {backup.set_id}  {backup.database:<8} {backup.engine:<10} "
            f"taken {backup.taken_at:%Y-%m-%d %H:%M:%S}  expires {backup.expires_at:%Y-%m-%d}  "
            f"{backup.size} bytes  {backup.status}" + (f"  ({backup.detail})" if backup.detail else "")
        )
