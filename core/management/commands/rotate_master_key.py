from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from core.crypto import master_keys, rotate_master_key
from core.recipients import sealed_rewrap


class Command(BaseCommand):
    help = (
        "Rewrap every subject key with the first key of QUANYI_MASTER_KEYS. Put the new key "
        "first, keep the old ones after it, run this, then drop the old ones."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        count = rotate_master_key()
        sealed = sealed_rewrap()
        kid = master_keys()[0].kid
        self.stdout.write(
            self.style.SUCCESS(
                f"Rewrapped {count} subject key(s) and resealed {sealed} recipient secret(s) and "
                f"notice reference(s) with master key {kid}."
            )
        )
