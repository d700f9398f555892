from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from rest_framework.exceptions import NotFound

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


def no_phone_sign_in(request: HttpRequest) -> JsonResponse:
    """allauth.headless routes its phone-number endpoints whatever the login methods. Quanyi signs
    in by e-mail only and keeps no phone number for allauth, so they answer 404 (in allauth's
    error shape) instead of failing inside the account adapter."""
    message = _("Quanyi has no sign-in by phone number.")
    return JsonResponse({"status": 404, "errors": [{"message": message, "code": "not_found"}]}, status=404)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404 for a URL no route matches: JSON under /api/ (what API clients parse and what the
    OpenAPI schema documents), the usual page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": str(NotFound.default_detail)}, status=404)
    return defaults.page_not_found(request, exception)
