from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext

from core.maintenance import maintenance_active


class ContentSecurityPolicyMiddleware:
    """A strict Content-Security-Policy on every response (no inline scripts anywhere)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.policy = settings.QUANYI_CSP

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if self.policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = self.policy
        return response


class MaintenanceMiddleware:
    """While the maintenance flag is set (a restore is replaying erasures), answer every request
    but /healthz with 503 and a short page, before anything reads a database."""

    ALWAYS_OPEN = frozenset({"/healthz"})

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path in self.ALWAYS_OPEN or not maintenance_active():
            return self.get_response(request)
        # No session, no database: the language comes from the cookie or Accept-Language.
        language = translation.get_language_from_request(request)
        with translation.override(language):
            if request.path.startswith(("/api/", "/_allauth/")):
                response: HttpResponse = JsonResponse(
                    {"detail": gettext("Quanyi is closed for maintenance. Please try again later.")},
                    status=503,
                )
            else:
                response = HttpResponse(
                    render_to_string("maintenance.html", {"LANGUAGE_CODE": language}), status=503
                )
        response["Retry-After"] = "600"
        response["Cache-Control"] = "no-store"
        return response
