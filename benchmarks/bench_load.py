"""Load test: request submission, request status and the consent check under gunicorn, driven
by locust (headless) and each compared with the bare Django JSON view served by the same
gunicorn in the same run: throughput, p50/p95/p99 latency and errors.

Each endpoint is loaded for SECONDS by USERS closed-loop locust users, alternating with a
bare-view run so that both see the same machine. Target: no errors anywhere. The ratios are
printed, not judged: locust shares the server's two CPUs, and which gunicorn worker accepts
which keep-alive connection decides as much as the code (the same consent check measured
0.27x-0.86x in repeated runs on an idle machine with 8 users; 32 users spread the connections
better). The consent check's throughput target (>= 0.5x) is bench_consent_check's, measured
best of three with a generator light enough to leave the server its CPUs. Submissions and
status reads are signed-in subjects with allauth app session tokens.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from django.db import connections
from django.test import Client
from django.utils import timezone

from benchmarks.gunicorn import ROOT, free_port, serve
from consent.apikeys import api_key_create
from consent.models import PolicyVersion, Purpose
from consent.services import consent_record
from core.audit import SYSTEM, Actor
from dsar import services as dsar_services
from tests import factories

USERS = 32
SECONDS = 6
SUBJECTS = 50
ENDPOINTS = ("consent-check", "request-status", "request-submit")
USER_CLASS = {
    "bare": "Bare",
    "consent-check": "ConsentCheck",
    "request-status": "RequestStatus",
    "request-submit": "RequestSubmit",
}


def _plan() -> dict[str, Any]:
    now = timezone.now()
    PolicyVersion.objects.create(
        version=991, title_zh="b", title_en="b", body_zh="b", body_en="b", effective_at=now, published_at=now
    )
    purpose = Purpose.objects.create(
        code="bench_load", name_zh="b", name_en="b", description_zh="b", description_en="b"
    )
    subjects = []
    for i in range(SUBJECTS):
        user = factories.UserFactory(email=f"load{i}@example.cn")
        subject = factories.subject(user=user, full_name=f"负载{i}")
        if i % 2:
            consent_record(subject=subject, purpose=purpose, action="grant", channel="web", actor=SYSTEM)
        request = dsar_services.request_submit(
            subject=subject, type="access", actor=Actor.of(user), user=user
        )
        client = Client()
        client.force_login(user)  # the session an app's allauth session token names
        subjects.append(
            {"token": client.session.session_key, "request": request.pk, "ref": subject.reference}
        )
    _key, secret = api_key_create(name="bench-load", scopes=["consent:check"])
    checks = [
        "/api/v1/consent-check/?" + urlencode({"subject": s["ref"], "purpose": purpose.code})
        for s in subjects
    ]
    return {"api_key": secret, "checks": checks, "subjects": subjects}


def _locust(port: int, plan_file: Path, endpoint: str, workdir: Path) -> dict[str, float]:
    prefix = workdir / endpoint
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(ROOT / "benchmarks" / "locustfile.py"),
            USER_CLASS[endpoint],
            "--headless",
            "--only-summary",
            f"--host=http://127.0.0.1:{port}",
            f"--users={USERS}",
            f"--spawn-rate={USERS}",
            f"--run-time={SECONDS}s",
            f"--csv={prefix}",
            "--loglevel=ERROR",
        ],
        cwd=ROOT,
        env={**os.environ, "QUANYI_LOAD_PLAN": str(plan_file)},
        check=False,  # locust exits 1 when a request failed: the CSV says which
        capture_output=True,
        timeout=SECONDS + 60,
    )
    stats = Path(f"{prefix}_stats.csv")
    if not stats.exists():  # locust did not run at all (not installed: `make bench` installs it)
        raise RuntimeError(f"locust failed ({done.returncode}): {done.stderr.decode()[-3000:]}")
    with stats.open(encoding="utf-8") as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    if row["Request Count"] == "0":
        raise RuntimeError(
            f"locust sent nothing to {endpoint}: {done.stderr.decode()[:3000]} {done.stdout.decode()[:1000]}"
        )
    return {
        "rps": float(row["Requests/s"]),
        "p50": float(row["50%"]),
        "p95": float(row["95%"]),
        "p99": float(row["99%"]),
        "requests": float(row["Request Count"]),
        "errors": float(row["Failure Count"]),
    }


def run() -> list[dict[str, object]]:
    plan = _plan()
    for connection in connections.all():
        connection.close()  # the server's processes need the test databases unlocked (SQLite)
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        plan_file = workdir / "plan.json"
        plan_file.write_text(json.dumps(plan))
        port = free_port()
        # Tasks the submissions queue go to a queue of their own that no worker reads.
        server = serve(port, CELERY_TASK_DEFAULT_QUEUE=f"quanyi-bench-{uuid.uuid4().hex[:8]}")
        try:
            _locust(port, plan_file, "bare", workdir)  # warm up
            for endpoint in ENDPOINTS:
                bare = _locust(port, plan_file, "bare", workdir)
                ours = _locust(port, plan_file, endpoint, workdir)
                ratio = ours["rps"] / bare["rps"] if bare["rps"] else 0.0
                errors = int(ours["errors"] + bare["errors"])
                rows.append(
                    {
                        "name": f"load: {endpoint} ({USERS} locust users, gunicorn)",
                        "ours": f"{ours['rps']:,.0f} req/s p50/95/99 "
                        f"{ours['p50']:.0f}/{ours['p95']:.0f}/{ours['p99']:.0f} ms",
                        "baseline": f"{bare['rps']:,.0f} req/s p50/95/99 "
                        f"{bare['p50']:.0f}/{bare['p95']:.0f}/{bare['p99']:.0f} ms (bare JSON view)",
                        "ratio": ratio,
                        "target": "no errors",
                        "ok": errors == 0 and ours["requests"] > 0,
                        "latency_ratio_p50": ours["p50"] / bare["p50"] if bare["p50"] else None,
                        "latency_ratio_p99": ours["p99"] / bare["p99"] if bare["p99"] else None,
                        "errors": errors,
                    }
                )
        finally:
            server.terminate()
            server.wait(timeout=20)
    return rows
