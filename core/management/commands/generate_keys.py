from __future__ import annotations

import secrets
from typing import Any

from django.core.management.base import BaseCommand

from core.crypto import generate_master_key


class Command(BaseCommand):
    help = "Print fresh values for SECRET_KEY, QUANYI_MASTER_KEYS and QUANYI_BLIND_INDEX_KEY."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"SECRET_KEY={secrets.token_urlsafe(50)}")
        self.stdout.write(f"QUANYI_MASTER_KEYS={generate_master_key()}")
        self.stdout.write(f"QUANYI_BLIND_INDEX_KEY={secrets.token_urlsafe(32)}")
        self.stdout.write(f"QUANYI_RECEIPT_SIGNING_KEY={generate_master_key()}")
