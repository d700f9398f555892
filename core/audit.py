"""The audit log: an append-only hash chain.

Every entry carries SHA-256(previous hash + canonical serialisation of the entry). Writers
lock the chain head row, so entries get gapless sequence numbers and exactly one
predecessor. Call `audit_log` inside the transaction of the change it records: both commit
together or neither does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from core.models import AuditChainHead, AuditEntry

GENESIS_HASH = "0" * 64
_SCALARS = (str, int, bool, type(None))


@dataclass(frozen=True)
class Actor:
    """Who acted, as the audit log records it: a type and an id, never a name or an e-mail."""

    type: str
    id: str = ""

    @classmethod
    def of(cls, user: Any) -> Actor:
        if user is None or not getattr(user, "is_authenticated", False):
            return cls("anonymous")
        return cls("user", str(user.pk))


SYSTEM = Actor("system")


def _check_data(value: Any, path: str = "data") -> None:
    # Floats do not survive every database's JSON round trip byte for byte; keep the
    # canonical form stable by allowing only exact types.
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{path}: audit keys must be strings")
            _check_data(v, f"{path}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_data(v, f"{path}[{i}]")
    elif not isinstance(value, _SCALARS):
        raise TypeError(f"{path}: {type(value).__name__} is not allowed in audit data")


def canonical(
    *,
    seq: int,
    at: datetime,
    actor_type: str,
    actor_id: str,
    action: str,
    object_type: str,
    object_id: str,
    data: Any,
) -> bytes:
    body = {
        "seq": seq,
        "at": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": [actor_type, actor_id],
        "action": action,
        "object": [object_type, object_id],
        "data": data,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(prev_hash: str, payload: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + payload).hexdigest()


def audit_log(
    *,
    actor: Actor,
    action: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    data: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry. Runs in the caller's transaction (or its own if there is none)."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
    payload_data = dict(data or {})
    _check_data(payload_data)
    with transaction.atomic():
        head = AuditChainHead.objects.select_for_update().filter(pk=1).first()
        if head is None:  # first entry ever; the row is created once and then only locked
            AuditChainHead.objects.get_or_create(pk=1, defaults={"seq": 0, "hash": GENESIS_HASH})
            head = AuditChainHead.objects.select_for_update().get(pk=1)
        seq = head.seq + 1
        # Truncated to the microsecond and in UTC so that the stored value re-serialises
        # identically on every backend.
        at = timezone.now().astimezone(UTC)
        digest = entry_hash(
            head.hash,
            canonical(
                seq=seq,
                at=at,
                actor_type=actor.type,
                actor_id=actor.id,
                action=action,
                object_type=object_type,
                object_id=object_id,
                data=payload_data,
            ),
        )
        entry = AuditEntry(
            seq=seq,
            at=at,
            actor_type=actor.type,
            actor_id=actor.id,
            action=action,
            object_type=object_type,
            object_id=object_id,
            data=payload_data,
            prev_hash=head.hash,
            hash=digest,
        )
        entry.save(force_insert=True)
        AuditChainHead.objects.filter(pk=1).update(seq=seq, hash=digest)
    return entry


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str = ""


def _entries(batch: int = 2000) -> Iterator[AuditEntry]:
    last = 0
    while True:
        chunk = list(AuditEntry.objects.filter(seq__gt=last).order_by("seq")[:batch])
        if not chunk:
            return
        yield from chunk
        last = chunk[-1].seq


def audit_verify() -> ChainReport:
    """Walk the chain from the genesis; report the first entry that does not fit."""
    prev_hash, expected_seq, checked = GENESIS_HASH, 1, 0
    for entry in _entries():
        if entry.seq != expected_seq:
            return ChainReport(False, checked, expected_seq, f"entry #{expected_seq} is missing")
        if entry.prev_hash != prev_hash:
            return ChainReport(
                False, checked, entry.seq, "its previous-hash does not match the entry before it"
            )
        digest = entry_hash(
            prev_hash,
            canonical(
                seq=entry.seq,
                at=entry.at,
                actor_type=entry.actor_type,
                actor_id=entry.actor_id,
                action=entry.action,
                object_type=entry.object_type,
                object_id=entry.object_id,
                data=entry.data,
            ),
        )
        if digest != entry.hash:
            return ChainReport(False, checked, entry.seq, "its content does not match its hash")
        prev_hash, expected_seq, checked = entry.hash, expected_seq + 1, checked + 1
    head = AuditChainHead.objects.filter(pk=1).first()
    head_seq, head_hash = (head.seq, head.hash) if head else (0, GENESIS_HASH)
    if head_seq != checked or head_hash != prev_hash:
        return ChainReport(
            False,
            checked,
            checked + 1 if head_seq > checked else head_seq,
            f"the chain ends at #{checked} but its head records #{head_seq}",
        )
    return ChainReport(True, checked)


def audit_trail(obj: models.Model) -> models.QuerySet[AuditEntry]:
    return AuditEntry.objects.filter(object_type=obj._meta.label_lower, object_id=str(obj.pk))
