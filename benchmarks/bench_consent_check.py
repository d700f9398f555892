"""Consent-check API throughput under gunicorn, against a bare Django JSON view served by the
same gunicorn (same settings, same middleware) in the same run.

gunicorn (gthread workers, one per CPU, keep-alive) serves the benchmark's test databases; a
load generator in this process keeps N connections busy for a fixed time on each endpoint,
alternating the two so that neither gets a quieter machine. Ours is
`GET /api/v1/consent-check/?subject=DS-…&purpose=…` with a scoped API key, answered from the
ledger's current-state table. Target: >= 0.5x the bare view's requests per second, with no
errors.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from urllib.parse import urlencode

from django.db import connections

from accounts.services import subject_create
from benchmarks.gunicorn import free_port, serve
from consent.apikeys import api_key_create
from consent.models import PolicyVersion, Purpose
from consent.services import consent_record
from core.audit import SYSTEM

CLIENTS = 8
SECONDS = 4.0


def _load(port: int, paths: list[str], headers: dict[str, str]) -> tuple[float, int, int]:
    """(requests per second, requests, errors) for CLIENTS keep-alive connections."""
    stop = time.monotonic() + SECONDS
    counts = [0] * CLIENTS
    errors = [0] * CLIENTS

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        rng = random.Random(i)  # noqa: S311 - load pattern, not security
        while time.monotonic() < stop:
            try:
                conn.request("GET", rng.choice(paths), headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    errors[i] += 1
                counts[i] += 1
            except (OSError, http.client.HTTPException):
                errors[i] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.close()

    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    return sum(counts) / elapsed, sum(counts), sum(errors)


def run() -> list[dict[str, object]]:
    from django.utils import timezone

    now = timezone.now()
    PolicyVersion.objects.create(
        version=990, title_zh="b", title_en="b", body_zh="b", body_en="b", effective_at=now, published_at=now
    )
    purpose = Purpose.objects.create(
        code="bench_check", name_zh="b", name_en="b", description_zh="b", description_en="b"
    )
    subjects = [subject_create(actor=SYSTEM, email=f"check{i}@example.cn") for i in range(200)]
    for s in subjects[::2]:
        consent_record(subject=s, purpose=purpose, action="grant", channel="web", actor=SYSTEM)
    _key, secret = api_key_create(name="bench", scopes=["consent:check"])
    headers = {"Authorization": f"Api-Key {secret}", "Host": "127.0.0.1"}
    ours_paths = [
        "/api/v1/consent-check/?" + urlencode({"subject": s.reference, "purpose": purpose.code})
        for s in subjects
    ]
    for connection in connections.all():
        connection.close()  # the server's processes need the test databases unlocked (SQLite)

    port = free_port()
    server = serve(port)
    try:
        _load(port, ["/__bench__/json/"], headers)  # warm up both
        _load(port, ours_paths[:10], headers)
        best_ours = best_bare = 0.0
        errors = 0
        for _ in range(3):  # best of three each: the machine is noisy
            rate, _n, err = _load(port, ["/__bench__/json/"], headers)
            best_bare, errors = max(best_bare, rate), errors + err
            rate, _n, err = _load(port, ours_paths, headers)
            best_ours, errors = max(best_ours, rate), errors + err
    finally:
        server.terminate()
        server.wait(timeout=20)
    ratio = best_ours / best_bare if best_bare else 0.0
    return [
        {
            "name": f"consent-check API under gunicorn, {CLIENTS} clients",
            "ours": f"{best_ours:,.0f} req/s",
            "baseline": f"{best_bare:,.0f} req/s (bare Django JSON view)",
            "ratio": ratio,
            "target": ">= 0.5x, no errors",
            "ok": ratio >= 0.5 and errors == 0,
        }
    ]
