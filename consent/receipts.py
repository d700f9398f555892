"""Consent receipts, shaped after ISO/IEC TS 27560 and the Kantara Consent Receipt, signed
with Ed25519. The public key is published (/.well-known/quanyi-receipt-key.pem) so anyone
holding a receipt can check that Quanyi issued it and that nobody altered it."""

from __future__ import annotations

import base64
import hashlib
import json
from functools import cache
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from consent.models import ConsentEvent

SCHEMA = "quanyi-consent-receipt/1 (ISO/IEC TS 27560, Kantara CR 1.1)"


@cache
def _private_key(seed_b64: str) -> Ed25519PrivateKey:
    try:
        seed = base64.b64decode(seed_b64, validate=True)
    except ValueError as exc:
        raise ImproperlyConfigured("QUANYI_RECEIPT_SIGNING_KEY is not base64.") from exc
    if len(seed) != 32:
        raise ImproperlyConfigured("QUANYI_RECEIPT_SIGNING_KEY must decode to 32 bytes.")
    return Ed25519PrivateKey.from_private_bytes(seed)


def private_key() -> Ed25519PrivateKey:
    return _private_key(settings.QUANYI_RECEIPT_SIGNING_KEY)


def public_key() -> Ed25519PublicKey:
    return private_key().public_key()


def public_key_pem() -> str:
    return (
        public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def key_id() -> str:
    raw = public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _canonical(receipt: dict[str, Any]) -> bytes:
    return json.dumps(receipt, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def receipt_body(event: ConsentEvent) -> dict[str, Any]:
    purpose = event.purpose
    policy = event.policy_version
    return {
        "schema": SCHEMA,
        "receipt_id": str(event.receipt_id),
        "record_id": f"consent-event-{event.pk}",
        "event": {
            "type": event.action,
            "time": event.occurred_at.isoformat(),
            "channel": event.channel,
            "state": "active"
            if event.grants
            else "withdrawn"
            if event.action == "withdraw"
            else event.action,
        },
        "principal": {"id": event.subject.reference},
        "controller": {
            "name": settings.QUANYI_CONTROLLER_NAME,
            "contact": settings.QUANYI_CONTROLLER_CONTACT,
        },
        "notice": {"policy_version": policy.version, "effective_at": policy.effective_at.isoformat()},
        "purposes": [
            {
                "code": purpose.code,
                "name": {"zh-hans": purpose.name_zh, "en": purpose.name_en},
                "legal_basis": purpose.legal_basis,
                "pi_categories": list(purpose.categories),
                "sensitive": purpose.sensitive,
                "separate_consent": event.separate,
                "recipients": list(purpose.recipients),
                "retention": purpose.retention,
            }
        ],
        "withdrawal": {"method": f"{settings.SITE_URL.rstrip('/')}/consents/"},
    }


def receipt_sign(event: ConsentEvent) -> dict[str, Any]:
    body = receipt_body(event)
    signature = private_key().sign(_canonical(body))
    return {
        "receipt": body,
        "signature": {"alg": "Ed25519", "kid": key_id(), "value": base64.b64encode(signature).decode()},
    }


def receipt_verify(signed: dict[str, Any], key: Ed25519PublicKey | None = None) -> bool:
    try:
        body, signature = signed["receipt"], base64.b64decode(signed["signature"]["value"])
        (key or public_key()).verify(signature, _canonical(body))
    except (KeyError, TypeError, ValueError, InvalidSignature):
        return False
    return True
