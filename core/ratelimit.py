"""Fixed-window rate limits in the shared cache (so they hold across processes)."""

from __future__ import annotations

import hashlib
import threading
import time

from django.core.cache import cache

# Hits a process has taken from a shared counter and not spent yet: (scope, digest) ->
# (window number, hits left). Only used with batch > 1.
_reserved: dict[tuple[str, str], tuple[int, int]] = {}
_reserved_lock = threading.Lock()
_RESERVED_MAX = 10_000


def _digest(scope: str, key: str) -> str:
    return hashlib.sha256(f"{scope}:{key}".encode()).hexdigest()[:32]


def _count(cache_key: str, hits: int, timeout: int) -> int:
    """Add `hits` to the counter (created with `timeout`); the new total."""
    if cache.add(cache_key, hits, timeout=timeout):
        return hits
    try:
        return int(cache.incr(cache_key, hits))
    except ValueError:  # expired between add and incr
        cache.add(cache_key, hits, timeout=timeout)
        return hits


def rate_limited(scope: str, key: str, *, limit: int, window: int, batch: int = 1) -> bool:
    """Count one hit; True when the limit for this window is exceeded. Keys are hashed, so
    no e-mail address or IP ends up in the cache in clear.

    With `batch` > 1 (for busy keys such as a service's API key) a process takes `batch` hits
    from the shared counter at once and spends them locally, so the cache is asked once per
    `batch` calls instead of twice per call. Windows are then aligned to the clock and the
    limit still holds across processes: never more than `limit` hits pass in a window; other
    processes' unspent hits may refuse up to (processes - 1) x (batch - 1) of them early."""
    digest = _digest(scope, key)
    if batch <= 1:
        return _count(f"rl:{scope}:{digest}", 1, window) > limit
    number = int(time.time() // window)
    slot = (scope, digest)
    with _reserved_lock:
        held_window, left = _reserved.get(slot, (number, 0))
        if held_window == number and left > 0:
            _reserved[slot] = (number, left - 1)
            return False
    total = _count(f"rl:{scope}:{digest}:{number}", batch, window + 1)
    granted = min(batch, limit - (total - batch))
    if granted <= 0:
        return True
    with _reserved_lock:
        if len(_reserved) >= _RESERVED_MAX:
            _reserved.clear()  # many idle keys: forgetting unspent hits only refuses early
        held_window, left = _reserved.get(slot, (number, 0))
        _reserved[slot] = (number, (left if held_window == number else 0) + granted - 1)
    return False
