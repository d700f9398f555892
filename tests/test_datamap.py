from __future__ import annotations

import json
from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import models

from core import datamap

# Apps whose models must all be classified: ours, and the third-party ones that hold
# personal data about account holders.
COVERED_APPS = {"core", "accounts", "consent", "dsar", "retention", "account", "mfa", "sessions", "admin"}


def _models() -> list[type[models.Model]]:
    return [
        m
        for m in apps.get_models()
        if m._meta.app_label in COVERED_APPS and not m._meta.abstract and not m._meta.proxy
    ]


def test_every_model_is_in_the_personal_data_map() -> None:
    unmapped = sorted(m._meta.label_lower for m in _models() if datamap.source_for(m) is None)
    assert unmapped == []


@pytest.mark.parametrize("model", _models(), ids=lambda m: m._meta.label_lower)
def test_every_field_is_classified_as_personal_or_not(model: type[models.Model]) -> None:
    source = datamap.source_for(model)
    assert source is not None
    fields = {f.name for f in model._meta.concrete_fields}

    unclassified = fields - set(source.fields) - source.not_personal

    assert unclassified == set(), (
        f"{model._meta.label_lower}: classify {sorted(unclassified)} in personal_data.py"
    )
    assert set(source.fields).isdisjoint(source.not_personal)


def test_registering_an_unknown_field_is_refused() -> None:
    from accounts.models import DataSubject

    with pytest.raises(ValueError, match="unknown fields"):
        datamap.register(DataSubject, subject="", not_personal=["no_such_field"])


def test_sensitive_categories_are_marked() -> None:
    rows = {(r["source"], r["field"]): r for r in datamap.rows()}
    assert rows[("accounts.datasubject", "id_number")]["sensitive"] is True
    assert rows[("accounts.datasubject", "id_number")]["export"] == "masked"
    assert all(r["category"] in datamap.Category.values for r in rows.values())


def test_datamap_command_prints_a_table_and_json() -> None:
    table, raw = StringIO(), StringIO()
    call_command("datamap", stdout=table)
    call_command("datamap", "--format", "json", stdout=raw)

    assert "accounts.datasubject" in table.getvalue()
    assert "identity_documents" in table.getvalue()
    parsed = json.loads(raw.getvalue())
    assert {"source": "accounts.datasubject", "field": "phone"}.items() <= next(
        r for r in parsed if r["source"] == "accounts.datasubject" and r["field"] == "phone"
    ).items()
    assert len(parsed) == len(datamap.rows())
