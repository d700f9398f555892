"""Envelope encryption with per-subject keys, and keyed blind indexes.

Each data subject has a random AES-256-GCM data key. It is stored only wrapped by a master
key from the environment, in the key store database. Destroying the wrapped key
(`subject_key_destroy`) makes every ciphertext of that subject unreadable everywhere,
including in copies and backups of the main database taken before: that is crypto-shredding.

Ciphertext format (text, so it fits any column): "qy1." + urlsafe-base64 of
key_id (16 bytes) | nonce (12 bytes) | AES-GCM ciphertext+tag. The associated data binds a
ciphertext to its table and column, so one cannot be pasted into another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.models import SubjectKey

PREFIX = "qy1."
_NONCE = 12


class CryptoError(Exception):
    pass


class KeyDestroyed(CryptoError):
    """The subject's key was destroyed (erasure): the data is gone for good."""


class KeyMissing(CryptoError):
    """No key with that id in the key store."""


class DecryptionFailed(CryptoError):
    pass


@dataclass(frozen=True)
class MasterKey:
    kid: str
    aead: AESGCM
    # The raw key, only to derive purpose keys from (`seal`); never used to encrypt directly.
    material: bytes = field(default=b"", repr=False)


@cache
def _master_keys(raw: tuple[str, ...]) -> tuple[MasterKey, ...]:
    keys = []
    for i, text in enumerate(raw):
        try:
            key = base64.b64decode(text, validate=True)
        except ValueError as exc:
            raise ImproperlyConfigured(f"QUANYI_MASTER_KEYS entry {i + 1} is not base64.") from exc
        if len(key) != 32:
            raise ImproperlyConfigured(f"QUANYI_MASTER_KEYS entry {i + 1} must decode to 32 bytes.")
        keys.append(MasterKey(hashlib.sha256(key).hexdigest()[:16], AESGCM(key), key))
    if not keys:
        raise ImproperlyConfigured("QUANYI_MASTER_KEYS is empty.")
    return tuple(keys)


def master_keys() -> tuple[MasterKey, ...]:
    return _master_keys(tuple(settings.QUANYI_MASTER_KEYS))


def generate_master_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _wrap_aad(key_id: uuid.UUID) -> bytes:
    return b"quanyi-subject-key:" + key_id.bytes


def _wrap(key_id: uuid.UUID, data_key: bytes) -> tuple[str, bytes]:
    mk = master_keys()[0]
    nonce = os.urandom(_NONCE)
    return mk.kid, nonce + mk.aead.encrypt(nonce, data_key, _wrap_aad(key_id))


def _unwrap(row: SubjectKey) -> bytes:
    if row.wrapped is None or row.destroyed_at is not None:
        raise KeyDestroyed(f"subject key {row.key_id} was destroyed")
    blob = bytes(row.wrapped)
    for mk in master_keys():
        if mk.kid == row.master_key_id:
            return mk.aead.decrypt(blob[:_NONCE], blob[_NONCE:], _wrap_aad(row.key_id))
    raise ImproperlyConfigured(
        f"Subject key {row.key_id} is wrapped by master key {row.master_key_id}, "
        "which is not in QUANYI_MASTER_KEYS."
    )


# A short-lived, process-local cache of unwrapped keys: decrypting a page of records
# should not cost a key-store query per field. Destroying a key evicts it here at once;
# other processes forget it within QUANYI_KEY_CACHE_SECONDS.
_cache: dict[uuid.UUID, tuple[float, bytes]] = {}


def _cached(key_id: uuid.UUID) -> bytes | None:
    hit = _cache.get(key_id)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    _cache.pop(key_id, None)
    return None


def _remember(key_id: uuid.UUID, data_key: bytes) -> None:
    if settings.QUANYI_KEY_CACHE_SECONDS > 0:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[key_id] = (time.monotonic() + settings.QUANYI_KEY_CACHE_SECONDS, data_key)


def clear_key_cache() -> None:
    _cache.clear()


def subject_key_get(key_id: uuid.UUID, *, create: bool = False) -> bytes:
    """The unwrapped data key; with create=True a missing key is made (idempotently)."""
    if (hit := _cached(key_id)) is not None:
        return hit
    row = SubjectKey.objects.filter(key_id=key_id).first()
    if row is None:
        if not create:
            raise KeyMissing(f"no subject key {key_id}")
        data_key = AESGCM.generate_key(bit_length=256)
        kid, wrapped = _wrap(key_id, data_key)
        try:
            with transaction.atomic(using="keystore"):
                SubjectKey.objects.create(key_id=key_id, wrapped=wrapped, master_key_id=kid)
        except IntegrityError:  # created concurrently: use theirs
            row = SubjectKey.objects.get(key_id=key_id)
            data_key = _unwrap(row)
    else:
        data_key = _unwrap(row)
    _remember(key_id, data_key)
    return data_key


def subject_keys_load(key_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """Load many subject keys with one key-store query (for pages of records); returns the
    ids that can decrypt (destroyed and unknown keys cannot)."""
    ready = {k for k in key_ids if _cached(k) is not None}
    wanted = key_ids - ready
    if wanted:
        for row in SubjectKey.objects.filter(key_id__in=wanted, destroyed_at__isnull=True):
            _remember(row.key_id, _unwrap(row))
            ready.add(row.key_id)
    return ready


def subject_key_destroy(key_id: uuid.UUID) -> bool:
    """Crypto-shred: clear the wrapped key. Returns False when it was already gone."""
    _cache.pop(key_id, None)
    changed = SubjectKey.objects.filter(key_id=key_id, destroyed_at__isnull=True).update(
        wrapped=None, master_key_id="", destroyed_at=timezone.now()
    )
    if not changed and not SubjectKey.objects.filter(key_id=key_id).exists():
        # Never had a key (nothing was ever encrypted): record the destruction anyway so
        # that a later encrypt cannot silently create a fresh key for an erased subject.
        SubjectKey.objects.get_or_create(
            key_id=key_id, defaults={"wrapped": None, "destroyed_at": timezone.now()}
        )
        return True
    return bool(changed)


def subject_keys_destroy(key_ids: Iterable[uuid.UUID], *, batch: int = 500) -> int:
    """Crypto-shred many keys (a restore does this for every tombstone, in case the key store
    itself was restored from its own backup). Returns how many were still there."""
    wanted = sorted(set(key_ids))
    destroyed = 0
    for start in range(0, len(wanted), batch):
        chunk = wanted[start : start + batch]
        for key_id in chunk:
            _cache.pop(key_id, None)
        destroyed += SubjectKey.objects.filter(key_id__in=chunk, destroyed_at__isnull=True).update(
            wrapped=None, master_key_id="", destroyed_at=timezone.now()
        )
    return destroyed


def subject_key_is_destroyed(key_id: uuid.UUID) -> bool:
    return SubjectKey.objects.filter(key_id=key_id, destroyed_at__isnull=False).exists()


def encrypt(key_id: uuid.UUID, plaintext: str, *, aad: str) -> str:
    data_key = subject_key_get(key_id, create=True)
    nonce = os.urandom(_NONCE)
    ct = AESGCM(data_key).encrypt(nonce, plaintext.encode(), aad.encode())
    return PREFIX + base64.urlsafe_b64encode(key_id.bytes + nonce + ct).decode()


def token_key_id(token: str) -> uuid.UUID:
    if not token.startswith(PREFIX):
        raise DecryptionFailed("not a Quanyi ciphertext")
    raw = base64.urlsafe_b64decode(token[len(PREFIX) :])
    return uuid.UUID(bytes=raw[:16])


def decrypt(token: str, *, aad: str) -> str:
    if not token.startswith(PREFIX):
        raise DecryptionFailed("not a Quanyi ciphertext")
    try:
        raw = base64.urlsafe_b64decode(token[len(PREFIX) :])
    except ValueError as exc:
        raise DecryptionFailed("corrupt ciphertext") from exc
    key_id = uuid.UUID(bytes=raw[:16])
    data_key = subject_key_get(key_id)
    try:
        return AESGCM(data_key).decrypt(raw[16 : 16 + _NONCE], raw[16 + _NONCE :], aad.encode()).decode()
    except InvalidTag as exc:
        raise DecryptionFailed("ciphertext does not authenticate") from exc


def rotate_master_key(batch: int = 500) -> int:
    """Rewrap every live subject key with the first master key. Idempotent and resumable:
    keys already wrapped by the first master key are skipped."""
    current = master_keys()[0].kid
    done = 0
    while True:
        rows = list(
            SubjectKey.objects.filter(destroyed_at__isnull=True)
            .exclude(master_key_id=current)
            .order_by("key_id")[:batch]
        )
        if not rows:
            return done
        with transaction.atomic(using="keystore"):
            for row in rows:
                data_key = _unwrap(row)
                kid, wrapped = _wrap(row.key_id, data_key)
                SubjectKey.objects.filter(key_id=row.key_id, master_key_id=row.master_key_id).update(
                    wrapped=wrapped, master_key_id=kid, rotated_at=timezone.now()
                )
                done += 1


# --- Sealing: system secrets under a key derived from the master key --------------------------
#
# For values that belong to no data subject (a recipient's webhook secret), or that must outlive
# the subject's key (what a recipient needs to find a person it must delete: the deletion notice
# is still owed after the subject's key is destroyed). A purpose key is derived from each master
# key with HKDF-SHA256, so a sealed value and a wrapped subject key never share a key, and one
# purpose cannot open another's values. The token names the master key it was sealed under:
# every configured master key can open its own, the first seals new ones.
# Format: "qys1." + master key id + "." + urlsafe-base64 of nonce (12 bytes) | ciphertext+tag.

SEALED_PREFIX = "qys1."


def _purpose_key(mk: MasterKey, purpose: str) -> AESGCM:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"quanyi-seal:" + purpose.encode()
    ).derive(mk.material)
    return AESGCM(derived)


def seal(plaintext: str, *, purpose: str, aad: str) -> str:
    mk = master_keys()[0]
    nonce = os.urandom(_NONCE)
    ct = _purpose_key(mk, purpose).encrypt(nonce, plaintext.encode(), aad.encode())
    return f"{SEALED_PREFIX}{mk.kid}.{base64.urlsafe_b64encode(nonce + ct).decode()}"


def sealed_master_key_id(token: str) -> str:
    if not token.startswith(SEALED_PREFIX):
        raise DecryptionFailed("not a sealed value")
    return token[len(SEALED_PREFIX) :].split(".", 1)[0]


def unseal(token: str, *, purpose: str, aad: str) -> str:
    kid = sealed_master_key_id(token)
    mk = next((k for k in master_keys() if k.kid == kid), None)
    if mk is None:
        raise DecryptionFailed(f"sealed under master key {kid}, which is not in QUANYI_MASTER_KEYS")
    try:
        raw = base64.urlsafe_b64decode(token[len(SEALED_PREFIX) + len(kid) + 1 :])
        return _purpose_key(mk, purpose).decrypt(raw[:_NONCE], raw[_NONCE:], aad.encode()).decode()
    except (ValueError, InvalidTag) as exc:
        raise DecryptionFailed("sealed value does not authenticate") from exc


# --- Blind indexes -------------------------------------------------------------------------


def normalise(kind: str, value: str) -> str:
    value = value.strip()
    if kind == "phone":
        digits = "".join(ch for ch in value if ch.isdigit())
        if digits.startswith("0086"):
            digits = digits[4:]
        elif digits.startswith("86") and len(digits) == 13:
            digits = digits[2:]
        return digits
    if kind == "id_number":
        return value.replace(" ", "").upper()
    if kind == "email":
        return value.lower()
    return value


def blind_index(kind: str, value: str | None) -> str:
    """A keyed HMAC of the normalised value: exact matching without decrypting."""
    if not value:
        return ""
    key = settings.QUANYI_BLIND_INDEX_KEY.encode()
    return hmac.new(key, f"{kind}:{normalise(kind, value)}".encode(), hashlib.sha256).hexdigest()
