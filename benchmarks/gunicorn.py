"""gunicorn serving the benchmark's test databases, as production serves Quanyi (DEBUG off,
gthread workers, keep-alive), with the bare JSON view of /__bench__/json/ routed as a baseline."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django.conf import settings

from core.db import database_url

ROOT = Path(__file__).resolve().parent.parent
LOG = Path(tempfile.gettempdir()) / "quanyi-bench-gunicorn.log"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(port: int, **extra_env: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(
        DEBUG="false",
        SECRET_KEY=settings.SECRET_KEY,  # the sessions the set-up made must verify
        QUANYI_BENCH_ENDPOINTS="true",
        QUANYI_CONSENT_CHECK_RATE="100000000",  # measure the work, not the per-key limit
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="false",
        DATABASE_URL=database_url("default"),
        KEYSTORE_DATABASE_URL=database_url("keystore"),
        PRODUCT_DATABASE_URL=database_url("product"),
        LOG_LEVEL="WARNING",
    )
    env.update(extra_env)
    # Production refuses to start without its secrets: reuse the development ones of this run.
    env.update(
        QUANYI_MASTER_KEYS=",".join(settings.QUANYI_MASTER_KEYS),
        QUANYI_BLIND_INDEX_KEY=settings.QUANYI_BLIND_INDEX_KEY,
        QUANYI_RECEIPT_SIGNING_KEY=settings.QUANYI_RECEIPT_SIGNING_KEY,
        QUANYI_BACKUP_KEY=",".join(settings.QUANYI_BACKUP_KEY)
        if isinstance(settings.QUANYI_BACKUP_KEY, list | tuple)
        else str(settings.QUANYI_BACKUP_KEY),
    )
    workers = str(max(2, os.cpu_count() or 2))
    log = LOG.open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            f"--bind=127.0.0.1:{port}",
            f"--workers={workers}",
            "--worker-class=gthread",
            "--threads=4",
            "--keep-alive=30",
            "--log-level=warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        # A file, not a pipe: nobody reads a pipe during the run, and a full one blocks the
        # workers at their next log line.
        stderr=log,
    )
    # Ready when every worker answers, not when the master has bound the port: workers that are
    # still importing Django would otherwise eat the first seconds of a measurement.
    deadline = time.monotonic() + 90
    answered = 0
    while time.monotonic() < deadline and answered < 4 * int(workers):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/__bench__/json/", headers={"Host": "127.0.0.1"})
            answered += conn.getresponse().status == 200
            conn.close()
        except (OSError, http.client.HTTPException):
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn died: {LOG.read_text(errors='replace')[-3000:]}") from None
            time.sleep(0.2)
    if answered >= 4 * int(workers):
        return proc
    proc.kill()
    raise RuntimeError("gunicorn did not start")
