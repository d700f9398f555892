from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from core.health import FAIL, health_report


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers: 503 only when a Quanyi database or the broker is down; a stale
    worker, an overdue or alerting job, or a product database down answer 200 "degraded"."""
    health = health_report()
    return JsonResponse(health.as_json(), status=503 if health.status == FAIL else 200)


@require_GET
def bench_bare_json(request: HttpRequest) -> JsonResponse:
    """A bare Django JSON view: the baseline `make bench` measures API endpoints against,
    served by the same process with the same middleware. Routed only when
    QUANYI_BENCH_ENDPOINTS is on (never in production)."""
    return JsonResponse({"allowed": True})
