"""The maintenance flag: while it is set, nobody uses the system.

A restore replaces the databases with an older copy in which people erased since are back;
until every one of them has been erased again (retention.restore), the web answers 503
(core.middleware.MaintenanceMiddleware), scheduled jobs skip their slot (core.jobs) and queued
tasks are left for the outbox relay to send again later (core.outbox).

The flag is a file (settings.QUANYI_MAINTENANCE_FILE), not a database row: it must survive the
restore that replaces the databases, and be readable while they are being replaced.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone


def maintenance_path() -> Path:
    return Path(settings.QUANYI_MAINTENANCE_FILE)


def maintenance_active() -> bool:
    return maintenance_path().exists()


def maintenance_info() -> dict[str, Any]:
    """What the flag says (why, since when); empty when it is not set or unreadable."""
    try:
        data = json.loads(maintenance_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def maintenance_on(*, reason: str, **details: str) -> Path:
    """Set the flag (atomically: a reader sees no flag or a whole one). Setting it again
    updates what it says."""
    path = maintenance_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"reason": reason, "since": timezone.now().isoformat(), "pid": os.getpid(), **details}
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(body, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return path


def maintenance_off() -> None:
    maintenance_path().unlink(missing_ok=True)
