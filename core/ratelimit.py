"""Fixed-window rate limits in the shared cache (so they hold across processes)."""

from __future__ import annotations

import hashlib

from django.core.cache import cache


def rate_limited(scope: str, key: str, *, limit: int, window: int) -> bool:
    """Count one hit; True when the limit for this window is exceeded. Keys are hashed, so
    no e-mail address or IP ends up in the cache in clear."""
    digest = hashlib.sha256(f"{scope}:{key}".encode()).hexdigest()[:32]
    cache_key = f"rl:{scope}:{digest}"
    if cache.add(cache_key, 1, timeout=window):
        return 1 > limit
    try:
        count = cache.incr(cache_key)
    except ValueError:  # expired between add and incr
        cache.add(cache_key, 1, timeout=window)
        count = 1
    return count > limit
