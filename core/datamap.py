"""The personal-data map: which field of which model holds which category of personal
information, whether it is sensitive, and how it is exported and erased.

Each app declares its models in `<app>/personal_data.py` (autodiscovered). Every field of a
registered model must be either mapped or listed as not personal; tests/test_datamap.py
fails for a project model, or a field, that nobody classified.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from django.db import models
from django.utils.translation import gettext_lazy as _


class Category(models.TextChoices):
    # The categories of the two privacy policies in shared/seeds.
    ACCOUNT = "account_registration", _("Account registration")
    CONTACT = "contact", _("Contact details")
    INTERACTION = "interaction_records", _("Interaction records")
    IDENTITY_DOCUMENTS = "identity_documents", _("Identity documents")
    BIRTH_GENDER_ORIGIN = "birth_gender_native_place", _("Birth date, gender and native place")
    DEVICE = "device_information", _("Device information")
    DEVICE_IDENTIFIERS = "unique_device_identifiers", _("Unique device identifiers")
    LOCATION = "location", _("Location")
    HEALTH = "health", _("Health information")
    ORDERS = "orders_delivery", _("Orders and delivery")
    PAYMENT = "payment_status", _("Payment status")
    COMMUNICATIONS = "communications", _("Communications")
    USAGE = "usage_statistics", _("Usage statistics")


class Export(models.TextChoices):
    VALUE = "value", _("exported as stored")
    MASKED = "masked", _("exported masked")
    OMIT = "omit", _("not exported (secret or internal)")


class Erase(models.TextChoices):
    DELETE = "delete", _("delete the row")
    NULL = "null", _("set to empty")
    MASK = "mask", _("mask")
    HASH = "hash", _("replace with a keyed hash")
    KEEP = "keep", _("keep")


@dataclass(frozen=True)
class PersonalField:
    category: Category
    sensitive: bool = False
    export: Export = Export.VALUE
    erase: Erase = Erase.NULL
    note: str = ""
    # The subject may ask for a new value (PIPL Art. 46; seed 000 §4.2): correction requests
    # offer exactly the fields that say so.
    correctable: bool = False


@dataclass
class Source:
    label: str  # app_label.model_name
    subject_path: str  # how a row is tied to its data subject ("" for the subject itself)
    fields: dict[str, PersonalField]
    not_personal: frozenset[str]
    note: str = ""
    model: type[models.Model] | None = field(default=None, repr=False)


_registry: dict[str, Source] = {}


def register(
    model: type[models.Model],
    *,
    subject: str,
    fields: Mapping[str, PersonalField] | None = None,
    not_personal: Iterable[str] = (),
    note: str = "",
) -> None:
    """Declare a model's personal data. Idempotent (autodiscovery may import twice)."""
    label = model._meta.label_lower
    known = {f.name for f in model._meta.concrete_fields}
    mapped = dict(fields or {})
    unknown = (set(mapped) | set(not_personal)) - known
    if unknown:
        raise ValueError(f"datamap for {label} names unknown fields: {sorted(unknown)}")
    _registry[label] = Source(label, subject, mapped, frozenset(not_personal), note, model)


def sources() -> list[Source]:
    return [_registry[k] for k in sorted(_registry)]


def source_for(model: type[models.Model]) -> Source | None:
    return _registry.get(model._meta.label_lower)


def rows() -> list[dict[str, object]]:
    """The map flattened to one row per personal field (for the command and the export)."""
    out: list[dict[str, object]] = []
    for src in sources():
        for name, pf in sorted(src.fields.items()):
            out.append(
                {
                    "source": src.label,
                    "field": name,
                    "category": str(pf.category.value),
                    "sensitive": pf.sensitive,
                    "export": str(pf.export.value),
                    "erase": str(pf.erase.value),
                    "correctable": pf.correctable,
                    "note": pf.note,
                }
            )
    return out
