"""API keys for the product's service accounts (the consent-check API).

A key is shown once, as `<prefix>.<secret>`. Only the prefix (to find the row) and the SHA-256
of the secret are stored, so a copy of the database does not hand out working keys. The secret
has 256 bits of entropy, which is why a plain hash (not a slow password hash) is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import timedelta
from typing import Final

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from consent.models import ApiKey
from core.audit import SYSTEM, Actor, audit_log
from core.db import row_by

CONSENT_CHECK: Final = "consent:check"
SCOPES: Final = frozenset({CONSENT_CHECK})
PREFIX_LENGTH: Final = 8
TOUCH_INTERVAL: Final = timedelta(minutes=1)
NAME_MAX: Final = 100  # ApiKey.name

# What authentication needs of a key, read on every API call (see core.db.row_by).
_KEY_FIELDS: Final = ("id", "name", "prefix", "key_hash", "scopes", "last_used_at", "revoked_at")

# Keys this process read lately: prefix -> (monotonic time read, key). See _key_by_prefix.
_recent: dict[str, tuple[float, ApiKey]] = {}
_RECENT_MAX: Final = 1000

# Compared against when the prefix is unknown, so that a miss costs about what a hit does.
_NO_HASH: Final = hashlib.sha256(b"no such key").hexdigest()


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_prefix() -> str:
    # token_urlsafe never yields ".", the separator of prefix and secret.
    return secrets.token_urlsafe(6)[:PREFIX_LENGTH]


def api_key_create(*, name: str, scopes: list[str], actor: Actor = SYSTEM) -> tuple[ApiKey, str]:
    """Create a key; returns it with its plaintext, which is not kept anywhere."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": _("Name the service account the key is for.")})
    if len(name) > NAME_MAX:
        raise ValidationError(
            {"name": _("The name can have at most %(max)d characters.") % {"max": NAME_MAX}}
        )
    unknown = sorted(set(scopes) - SCOPES)
    if unknown:
        raise ValidationError({"scopes": _("Unknown scope: %(scopes)s.") % {"scopes": ", ".join(unknown)}})
    secret = secrets.token_urlsafe(32)
    for _attempt in range(5):
        prefix = _new_prefix()
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(
                    name=name,
                    prefix=prefix,
                    key_hash=secret_hash(secret),
                    scopes=sorted(set(scopes)),
                )
                audit_log(
                    actor=actor,
                    action="apikey.created",
                    obj=key,
                    data={"name": key.name, "prefix": prefix, "scopes": list(key.scopes)},
                )
        except IntegrityError:  # the prefix is taken (48 random bits: practically never)
            continue
        return key, f"{prefix}.{secret}"
    raise RuntimeError("could not find a free API key prefix")


@transaction.atomic
def api_key_revoke(*, key: ApiKey, actor: Actor = SYSTEM) -> ApiKey:
    """Revoke a key at once. Revoking a revoked key changes nothing."""
    now = timezone.now()
    _recent.pop(key.prefix, None)
    transaction.on_commit(lambda: _recent.pop(key.prefix, None))
    if ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=now) == 1:
        audit_log(actor=actor, action="apikey.revoked", obj=key, data={"prefix": key.prefix})
    key.refresh_from_db()
    return key


def _key_by_prefix(prefix: str) -> ApiKey | None:
    """The key row, reused for QUANYI_API_KEY_CACHE_SECONDS by this process: a product calls
    the consent check for every page it renders, and the key is the same on every call."""
    ttl = settings.QUANYI_API_KEY_CACHE_SECONDS
    now = time.monotonic()
    held = _recent.get(prefix)
    if held is not None and now - held[0] < ttl:
        return held[1]
    key = row_by(ApiKey, "prefix", prefix, _KEY_FIELDS)
    if key is not None and key.revoked_at is None and ttl > 0:
        if len(_recent) >= _RECENT_MAX:
            _recent.clear()
        _recent[prefix] = (now, key)
    else:
        _recent.pop(prefix, None)
    return key


def api_key_authenticate(*, presented: str) -> ApiKey | None:
    """The live key behind `<prefix>.<secret>`, or None (unknown, wrong secret or revoked)."""
    prefix, dot, secret = presented.partition(".")
    if not dot or len(prefix) != PREFIX_LENGTH or not secret:
        return None
    key = _key_by_prefix(prefix)
    matches = hmac.compare_digest(secret_hash(secret), key.key_hash if key else _NO_HASH)
    if key is None or not matches or key.revoked_at is not None:
        return None
    return key


def api_key_touch(*, key: ApiKey) -> None:
    """Record use, at most once a minute per key: one conditional UPDATE, not a write per call.
    The key was just read, so a recent `last_used_at` skips the statement altogether."""
    now = timezone.now()
    if key.last_used_at is not None and key.last_used_at > now - TOUCH_INTERVAL:
        return
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - TOUCH_INTERVAL)
    if ApiKey.objects.filter(stale, pk=key.pk).update(last_used_at=now) == 1:
        key.last_used_at = now
