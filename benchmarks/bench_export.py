"""Access packages at scale.

- build time: the whole package (plan, stream every row into data.json, the CSV files and
  index.html, encrypt, mark ready) of a subject with 10k product rows, through
  `services.export_build` as the worker runs it, against the naive way measured in the same
  run on the same rows (fetch everything, one json.dumps of a big dict, one in-memory ZIP,
  one AES-GCM call). Target: <= 1 s.
- memory: **peak RSS of a child process** (VmHWM, Linux) that runs the same build for 10k
  and for 100k rows; the child imports Django and every app first, so the figure is the whole
  process, not just the build. Targets: <= 100 MB, and 100k within 1.1x of 10k (flat).
  For contrast the naive way's peak at 100k rows is measured in a child too.

The tasks the build queues go to a queue of this run's own, which no worker consumes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.db import connections

from accounts.models import DataSubject, User
from accounts.services import subject_create
from config.celery import app as celery_app
from core.audit import SYSTEM
from core.db import database_url
from dsar import sample_product, services
from dsar.models import DataExport, DataSubjectRequest, RequestType, Status

ROOT = Path(__file__).resolve().parent.parent
QUEUE = f"quanyi-bench-{uuid.uuid4().hex[:8]}"
MB = 1024 * 1024

# VmHWM (the process's own high-water mark) rather than ru_maxrss: on Linux ru_maxrss also
# counts the memory of the process this one was forked from, before exec.
CHILD = """
import json, os, sys, time
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
from benchmarks import bench_export
idle = bench_export.peak_rss_kb()
start = time.perf_counter()
result = bench_export.child_run(sys.argv[1], int(sys.argv[2]))
elapsed = time.perf_counter() - start
peak = bench_export.peak_rss_kb()
print(json.dumps({"result": result, "idle_kb": idle, "peak_kb": peak, "seconds": elapsed}))
"""


def peak_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status: this benchmark needs Linux")


def _child(kind: str, arg: int, export_dir: Path) -> dict[str, object]:
    env = dict(os.environ)
    env.update(
        DEBUG="true",
        DATABASE_URL=database_url("default"),
        KEYSTORE_DATABASE_URL=database_url("keystore"),
        PRODUCT_DATABASE_URL=database_url("product"),
        CELERY_TASK_DEFAULT_QUEUE=QUEUE,
        QUANYI_EXPORT_DIR=str(export_dir),
    )
    for connection in connections.all():
        connection.close()  # SQLite: let the child write without waiting for our handle
    done = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(arg)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def child_run(kind: str, arg: int) -> str:
    """In the child: `build` runs the real build of export `arg`; `naive` builds the package
    of patient `arg` the naive way."""
    if kind == "build":
        return services.export_build(export_id=arg)
    return str(len(_naive_package(arg)))


def _naive_package(patient_id: int) -> bytes:
    """Everything in memory: what a first version would write."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    with connections["product"].cursor() as cursor:
        cursor.execute("SELECT * FROM messages WHERE patient_id = %s ORDER BY id", [patient_id])
        names = [c[0] for c in cursor.description]
        rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    data = json.dumps({"messages": rows}, ensure_ascii=False, default=str).encode()
    buffer = tempfile.SpooledTemporaryFile(max_size=10**10)  # stays in memory
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data.json", data)
    buffer.seek(0)
    key = AESGCM.generate_key(bit_length=256)
    return AESGCM(key).encrypt(os.urandom(12), buffer.read(), None)


def _subject_with_rows(n: int, tag: str) -> tuple[DataSubject, User, int]:
    email = f"bench-export-{tag}@example.cn"
    user = User.objects.create_user(email, "bench-password-0")
    subject = subject_create(actor=SYSTEM, user=user, email=email, phone="13800000000")
    now = datetime.now(tz=UTC)
    person = sample_product.Person(email, "", "压测", "", "1990-01-01", "女", "上海")
    patient = sample_product.patient_insert(person, created_at=now)
    body = "复诊提醒：请按时服药，注意低盐饮食，三个月后复查血压和血糖。"
    for start in range(0, n, 10_000):
        rows = [(patient, "app", "out", f"{body} #{i}", now) for i in range(start, min(n, start + 10_000))]
        sample_product.insert_rows(
            "messages", ["patient_id", "channel", "direction", "body", "sent_at"], rows
        )
    return subject, user, patient


def _export_for(subject: DataSubject, user: User, n: int) -> DataExport:
    # Created directly (no outbox message): the benchmark runs the build itself.
    request = DataSubjectRequest.objects.create(
        reference=f"DSR-2026-9{n:05d}"[:20],
        type=RequestType.PORTABILITY,
        status=Status.VERIFIED,
        subject=subject,
        user=user,
    )
    return DataExport.objects.create(request=request, subject=subject, language="zh-hans")


def run() -> list[dict[str, object]]:
    settings.CELERY_TASK_DEFAULT_QUEUE = QUEUE
    celery_app.conf.task_default_queue = QUEUE
    celery_app.conf.task_default_routing_key = QUEUE
    sample_product.install()
    sample_product.truncate()
    with tempfile.TemporaryDirectory(prefix="quanyi-bench-exports-") as folder:
        export_dir = Path(folder)
        settings.QUANYI_EXPORT_DIR = export_dir

        # Time, in this process, at 10k rows.
        subject, user, patient = _subject_with_rows(10_000, "10k")
        timings = []
        for _ in range(3):  # best of three
            export = _export_for(subject, user, 10_000 + len(timings))
            start = time.perf_counter()
            assert services.export_build(export_id=export.pk) == services.BUILT
            timings.append(time.perf_counter() - start)
        export.refresh_from_db()
        assert export.rows_done >= 10_000, export.rows_done
        ours = min(timings)
        naive = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            _naive_package(patient)
            naive = min(naive, time.perf_counter() - start)

        # Peak RSS of a child process, at 10k and at 100k rows.
        small = _child("build", _export_for(subject, user, 20_000).pk, export_dir)
        big_subject, big_user, big_patient = _subject_with_rows(100_000, "100k")
        big = _child("build", _export_for(big_subject, big_user, 30_000).pk, export_dir)
        naive_big = _child("naive", big_patient, export_dir)
        assert small["result"] == big["result"] == services.BUILT, (small, big)

    peak_small = int(str(small["peak_kb"])) * 1024
    peak_big = int(str(big["peak_kb"])) * 1024
    idle = int(str(small["idle_kb"])) * 1024
    peak_naive = int(str(naive_big["peak_kb"])) * 1024
    return [
        {
            "name": "access package, 10k product rows",
            "ours": f"{ours * 1000:.0f} ms",
            "baseline": f"{naive * 1000:.0f} ms (in memory)",
            "ratio": ours / naive,
            "target": "<= 1 s",
            "ok": ours <= 1.0,
        },
        {
            "name": "access package peak RSS, 10k rows",
            "ours": f"{peak_small / MB:.0f} MB",
            "baseline": f"{idle / MB:.0f} MB (Django idle)",
            "ratio": peak_small / idle,
            "target": "<= 100 MB",
            "ok": peak_small <= 100 * MB,
        },
        {
            "name": "access package peak RSS, 100k vs 10k rows",
            "ours": f"{peak_big / MB:.0f} MB",
            "baseline": f"{peak_small / MB:.0f} MB",
            "ratio": peak_big / peak_small,
            "target": "<= 1.1x, <= 100 MB",
            "ok": peak_big / peak_small <= 1.1 and peak_big <= 100 * MB,
        },
        {
            "name": "naive in-memory package peak RSS, 100k",
            "ours": f"{peak_big / MB:.0f} MB",
            "baseline": f"{peak_naive / MB:.0f} MB (naive)",
            "ratio": peak_big / peak_naive,
            "target": "< 1x (informative)",
            "ok": True,
        },
    ]
