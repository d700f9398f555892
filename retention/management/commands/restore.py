from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.audit import Actor
from retention import restore
from retention.backup_file import BackupError

COMMAND = Actor("system", "restore")


class Command(BaseCommand):
    help = (
        "Restore a backup set (main and product databases) and erase again everyone erased since "
        "it was taken. The web answers 503 until that is done."
    )

    # A restore is what one runs when a database is broken or empty, which the system checks
    # (the product's data map) would refuse.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("backup_id", help="a backup id or a backup set id (`backup --list`)")
        parser.add_argument("--yes", action="store_true", help="restore now (replaces the databases)")
        parser.add_argument("--dry-run", action="store_true", help="only say what would be restored")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            plan = restore.restore_plan(backup_id=options["backup_id"])
            self._describe(plan)
            if options["dry_run"] or not options["yes"]:
                self.stdout.write(
                    "Dry run: nothing restored."
                    if options["dry_run"]
                    else "Nothing restored yet. Run again with --yes to replace the databases."
                )
                return
            result = restore.backup_restore(
                backup_id=options["backup_id"], actor=COMMAND, say=self.stdout.write
            )
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Restored backup set {result.plan.set_id}; {result.replayed} tombstone(s) replayed; "
                "the system is open again."
            )
        )
        if result.keys_destroyed_again:
            self.stdout.write(
                self.style.WARNING(
                    f"{result.keys_destroyed_again} subject key(s) of erased people were present in the "
                    "key store and have been destroyed again: was the key store restored from a backup?"
                )
            )

    def _describe(self, plan: restore.RestorePlan) -> None:
        if plan.resuming:
            self.stdout.write(
                self.style.WARNING(
                    f"An earlier restore did not finish; its saved tombstones ({restore.pending_path()}) "
                    "are replayed too."
                )
            )
        self.stdout.write(f"Backup set {plan.set_id}, taken at {plan.taken_at.isoformat()}:")
        for b in plan.members:
            checked = f"verified {b.verified_at:%Y-%m-%d %H:%M}" if b.verified_at else "not verified yet"
            self.stdout.write(
                f"  {b.database} ({b.engine}): {b.path}, {b.size} bytes, {b.status}, {checked} "
                f"-> into {plan.targets[b.database]}"
            )
        self.stdout.write(
            f"Tombstones to replay: {len(plan.replay_after)} (erasures finished after the backup was "
            f"taken, of {plan.tombstones_known} recorded), plus any the backup missed."
        )
