"""Model fields for sensitive values.

EncryptedTextField stores ciphertext under the owning subject's key; the model attribute
holds plaintext. BlindIndexField holds a keyed HMAC of another field's plaintext so that
exact matches (phone, ID number, e-mail) work without decrypting.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from core import crypto


def _resolve(instance: models.Model, path: str) -> Any:
    value: Any = instance
    for part in path.split("."):
        value = getattr(value, part)
        if value is None:
            return None
    return value


class EncryptedTextField(models.TextField):
    """`key_from` names the attribute path to the subject's key id, e.g. "key_id" on
    DataSubject or "subject.key_id" on a model with a `subject` foreign key."""

    def __init__(self, *args: Any, key_from: str = "subject.key_id", **kwargs: Any) -> None:
        self.key_from = key_from
        kwargs.setdefault("null", True)
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs["key_from"] = self.key_from
        return name, path, args, kwargs

    @property
    def aad(self) -> str:
        return f"{self.model._meta.label_lower}.{self.name}"

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        value = getattr(model_instance, self.attname)
        if value in (None, ""):
            return None
        key_id = _resolve(model_instance, self.key_from)
        if not isinstance(key_id, uuid.UUID):
            raise ValidationError(f"{self.aad}: no subject key to encrypt with")
        return crypto.encrypt(key_id, str(value), aad=self.aad)

    def get_prep_value(self, value: Any) -> Any:
        # Only ciphertext produced by pre_save may reach the database; a plaintext value
        # here means a bulk update that would store personal data in clear.
        if value is None or (isinstance(value, str) and value.startswith(crypto.PREFIX)):
            return value
        raise ValueError(f"{self.aad}: encrypted fields are written through save(), not update()")

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> str | None:
        if value is None:
            return None
        try:
            return crypto.decrypt(value, aad=self.aad)
        except (crypto.KeyDestroyed, crypto.KeyMissing):
            return None  # crypto-shredded: the value no longer exists

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name != "isnull":
            return None  # ciphertext is not comparable; use a BlindIndexField
        return super().get_lookup(lookup_name)


class BlindIndexField(models.CharField):
    """HMAC-SHA256 of `source`'s plaintext, normalised for `kind` (phone, id_number, email)."""

    def __init__(self, *args: Any, source: str = "", kind: str = "", **kwargs: Any) -> None:
        self.source, self.kind = source, kind
        kwargs.setdefault("max_length", 64)
        kwargs.setdefault("blank", True)
        kwargs.setdefault("db_index", True)
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs.update(source=self.source, kind=self.kind)
        for k in ("max_length", "blank", "db_index", "editable"):
            kwargs.pop(k, None)
        return name, path, args, kwargs

    def pre_save(self, model_instance: models.Model, add: bool) -> str:
        digest = crypto.blind_index(self.kind, getattr(model_instance, self.source))
        setattr(model_instance, self.attname, digest)
        return digest
