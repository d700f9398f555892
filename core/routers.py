from __future__ import annotations

from typing import Any

KEYSTORE_MODELS = {"core.subjectkey"}


class KeystoreRouter:
    """Subject keys live in the key store database, everything else in default.

    Keeping keys apart means a backup of the main database never carries the keys that
    decrypt it (see README, "Key store").
    """

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        # Built from app_label and model_name: the database cache's entry model has a
        # minimal _meta without label_lower.
        meta = model._meta
        return "keystore" if f"{meta.app_label}.{meta.model_name}" in KEYSTORE_MODELS else None

    db_for_write = db_for_read

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        return None

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool:
        # The product database belongs to the product: Quanyi never creates tables there.
        if f"{app_label}.{model_name}" in KEYSTORE_MODELS:
            return db == "keystore"
        return db == "default"
