from __future__ import annotations

from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from rest_framework.exceptions import NotFound

from core.maintenance import maintenance_active
from core.models import Heartbeat


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers: 200 when both databases answer; the last worker heartbeat is shown."""
    checks: dict[str, object] = {}
    ok = True
    for alias in ("default", "keystore"):
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
            checks[alias] = "ok"
        except Exception as exc:  # report, do not raise: this page must always answer
            checks[alias] = type(exc).__name__
            ok = False
    beat = Heartbeat.objects.filter(source="worker").values_list("at", flat=True).first() if ok else None
    checks["worker_heartbeat"] = beat.isoformat() if beat else None
    # Answered even during maintenance (the only page that is): monitoring sees why users get 503.
    checks["maintenance"] = maintenance_active()
    return JsonResponse({"status": "ok" if ok else "fail", "checks": checks}, status=200 if ok else 503)


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
