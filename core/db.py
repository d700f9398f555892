from __future__ import annotations

from django.db import connections


def database_url(alias: str) -> str:
    """The URL of the database behind an alias as configured now (in a test run: the test
    database), for a subprocess that must use the same one: a worker, a command, gunicorn."""
    s = connections[alias].settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s.get("USER") or ""
    if s.get("PASSWORD"):
        auth += f":{s['PASSWORD']}"
    host = f"{auth}@" if auth else ""
    return f"postgres://{host}{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"
