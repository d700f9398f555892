from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery.schedules import crontab
from django.conf import settings
from django.test import Client
from django.utils import timezone

from core import health, tasks
from core.models import Heartbeat, JobState
from tests.conftest import ALL

pytestmark = pytest.mark.django_db(databases=ALL)


def test_pages_carry_a_strict_content_security_policy(client: Client) -> None:
    response = client.get("/accounts/login/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_the_login_page_is_chinese_first_and_switches_to_english(client: Client) -> None:
    zh = client.get("/accounts/login/")
    assert '<html lang="zh-hans">' in zh.content.decode()

    switched = client.post("/i18n/setlang/", {"language": "en", "next": "/accounts/login/"})
    assert switched.status_code == 302
    en = client.get("/accounts/login/")
    assert '<html lang="en">' in en.content.decode()


def test_healthz_reports_both_databases(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"]["default"] == "ok"
    assert response.json()["checks"]["keystore"] == "ok"


# --- /healthz for load balancers ---------------------------------------------------------------


def _all_fresh(now: datetime) -> None:
    Heartbeat.objects.create(source="worker", at=now - timedelta(seconds=20), hostname="w1")
    for name in settings.CELERY_BEAT_SCHEDULE:
        JobState.objects.create(name=name, last_started_at=now - timedelta(seconds=30), last_status="ok")


def test_healthz_is_ok_when_everything_is_fresh(client: Client) -> None:
    now = timezone.now()
    _all_fresh(now)

    response = client.get("/healthz")

    body = response.json()
    assert response.status_code == 200
    assert (body["status"], body["problems"]) == ("ok", [])
    assert body["checks"]["broker"]["status"] == "ok"
    assert body["checks"]["broker"]["transport"] == settings.CELERY_BROKER_URL.split("://")[0]
    assert body["checks"]["worker"]["status"] == "ok" and body["checks"]["worker"]["age_seconds"] >= 20
    assert set(body["checks"]["jobs"]) == set(settings.CELERY_BEAT_SCHEDULE)
    assert not any(job["overdue"] for job in body["checks"]["jobs"].values())
    assert response["Cache-Control"].startswith("max-age=0")


def test_a_stale_worker_and_an_overdue_job_degrade_but_keep_200(client: Client) -> None:
    now = timezone.now()
    _all_fresh(now)
    Heartbeat.objects.filter(source="worker").update(at=now - timedelta(minutes=10))
    JobState.objects.filter(name="verify-audit").update(last_started_at=now - timedelta(hours=40))
    JobState.objects.filter(name="dsar-reminders").update(last_started_at=now - timedelta(minutes=16))

    response = client.get("/healthz")

    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "degraded"
    assert body["checks"]["worker"]["status"] == "stale"
    assert body["checks"]["jobs"]["verify-audit"]["overdue"] is True
    assert body["checks"]["jobs"]["dsar-reminders"]["overdue"] is False  # within its grace
    assert body["problems"] == ["worker heartbeat stale", "job verify-audit is overdue"]


def test_a_missing_heartbeat_and_a_failed_job_degrade(client: Client) -> None:
    JobState.objects.create(name="backup-nightly", last_started_at=timezone.now(), last_status="failed")

    body = client.get("/healthz").json()

    assert body["status"] == "degraded"
    assert body["checks"]["worker"] == {"status": "missing", "last_seen": None, "age_seconds": None}
    assert body["checks"]["jobs"]["retention-sweep"] == {
        "last_run": None,
        "last_finished": None,
        "last_status": None,
        "overdue": False,  # never run yet: the heartbeat tells whether beat and a worker are there
    }
    assert "job backup-nightly: last run failed" in body["problems"]


def test_the_heartbeat_job_records_its_run(client: Client) -> None:
    tasks.heartbeat()

    body = client.get("/healthz").json()

    assert body["checks"]["worker"]["status"] == "ok"
    assert body["checks"]["jobs"]["heartbeat"]["last_status"] == "ok"
    assert body["checks"]["jobs"]["heartbeat"]["overdue"] is False


def test_a_refused_broker_fails_with_503_and_no_secret(client: Client, settings: Any) -> None:
    _all_fresh(timezone.now())
    with socket.socket() as probe:  # a free port: nothing listens there once it is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.CELERY_BROKER_URL = f"redis://:hunter2-secret@127.0.0.1:{port}/0"

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"]["broker"]["transport"] == "redis"
    assert body["checks"]["broker"]["status"] not in ("ok", "")
    assert "hunter2" not in response.content.decode()
    assert str(port) not in response.content.decode()


def test_a_broker_that_never_answers_does_not_hang_the_page(client: Client, settings: Any) -> None:
    _all_fresh(timezone.now())
    settings.QUANYI_HEALTH_BROKER_TIMEOUT = 1.0
    with socket.socket() as silent:  # accepts connections (the backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        settings.CELERY_BROKER_URL = f"redis://:hunter2-secret@127.0.0.1:{silent.getsockname()[1]}/0"
        started = time.monotonic()
        response = client.get("/healthz")
        took = time.monotonic() - started

    assert response.status_code == 503
    assert took < 3.0
    assert response.json()["checks"]["broker"]["status"] != "ok"
    assert "hunter2" not in response.content.decode()


def test_the_overdue_rule_follows_each_schedule() -> None:
    at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # 20:00 in Shanghai
    nightly = crontab(hour=2, minute=30)  # 18:30 UTC
    assert not health.job_overdue(60.0, at - timedelta(minutes=5), now=at)
    assert health.job_overdue(60.0, at - timedelta(minutes=7), now=at)
    assert not health.job_overdue(24 * 3600.0, at - timedelta(hours=35), now=at)
    assert health.job_overdue(24 * 3600.0, at - timedelta(hours=37), now=at)
    # Last ran at 02:30 Shanghai today: the next run is tomorrow, not late.
    assert not health.job_overdue(nightly, datetime(2026, 11, 30, 18, 30, tzinfo=UTC), now=at)
    # Last ran the night before: tonight's 02:30 slot was missed by more than an hour.
    assert health.job_overdue(nightly, datetime(2026, 11, 29, 18, 30, tzinfo=UTC), now=at)
    assert nightly.nowfun is None  # the schedule itself is left alone


def test_api_schema_and_docs_are_served_without_a_cdn(client: Client) -> None:
    schema = client.get("/api/schema/")
    docs = client.get("/api/docs/")
    assert schema.status_code == 200
    assert b"openapi" in schema.content
    assert docs.status_code == 200
    assert b"cdn" not in docs.content.lower()


def test_the_openapi_schema_validates_without_warnings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from django.core.management import call_command

    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = out.read_text()
    for path in (
        "/api/v1/requests/",
        "/api/v1/requests/{id}/withdraw/",
        "/api/v1/public/requests/",
        "/api/v1/public/requests/{id}/verify/",
    ):
        assert f"  {path}:" in schema


def test_an_api_url_that_no_route_matches_answers_json_404_and_a_page_stays_html(client: Client) -> None:
    # Found by schemathesis: a path id that is not a number (/api/v1/requests/-0.05/) matched
    # no route and got Django's HTML page, which the schema does not document.
    api = client.get("/api/v1/requests/-0.05/", HTTP_ACCEPT_LANGUAGE="en")
    page = client.get("/no-such-page/", HTTP_ACCEPT_LANGUAGE="en")

    assert (api.status_code, api["Content-Type"]) == (404, "application/json")
    assert api.json() == {"detail": "Not found."}
    assert page.status_code == 404
    assert page["Content-Type"].startswith("text/html")
