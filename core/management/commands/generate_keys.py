from __future__ import annotations

import secrets
from typing import Any

from django.core.management.base import BaseCommand

from core.crypto import generate_master_key


class Command(BaseCommand):
    help = "Print fresh values for SECRET_KEY and the QUANYI_* keys (master, blind index, receipts, backups)."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"SECRET_KEY={secrets.token_urlsafe(50)}")
        self.stdout.write(f"QUANYI_MASTER_KEYS={generate_master_key()}")
        self.stdout.write(f"QUANYI_BLIND_INDEX_KEY={secrets.token_urlsafe(32)}")
        self.stdout.write(f"QUANYI_RECEIPT_SIGNING_KEY={generate_master_key()}")
        # Keep this one apart from the backups it opens (and from the key store's backups).
        self.stdout.write(f"QUANYI_BACKUP_KEY={generate_master_key()}")
