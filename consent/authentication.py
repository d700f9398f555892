"""API-key authentication for the product's service accounts.

`Authorization: Api-Key <prefix>.<secret>`. A key authenticates a service, not a person: the
request's user is a `ServiceAccount`, never a `User`, so no subject or staff view accepts it
(those use session authentication only, and the staff test fails for it too).
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from consent import apikeys
from consent.models import ApiKey

KEYWORD = "Api-Key"


class ServiceAccount:
    """The caller behind an API key."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    pk = None

    def __init__(self, key: ApiKey) -> None:
        self.key = key

    def __str__(self) -> str:
        return f"api key {self.key.prefix}"


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[ServiceAccount, ApiKey] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != KEYWORD.lower().encode():
            return None
        if len(parts) != 2:
            raise AuthenticationFailed(_("Send the key as: Authorization: Api-Key <prefix>.<secret>"))
        try:
            presented = parts[1].decode("ascii")
        except UnicodeDecodeError:
            presented = ""
        key = apikeys.api_key_authenticate(presented=presented)
        if key is None:
            raise AuthenticationFailed(_("Invalid or revoked API key."))
        apikeys.api_key_touch(key=key)
        return ServiceAccount(key), key

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (with WWW-Authenticate) rather than 403 when no key is sent.
        return KEYWORD


class HasScope(BasePermission):
    """The API key carries every scope in the view's `required_scopes`."""

    message = _("This API key is not allowed to do this.")

    def has_permission(self, request: Request, view: APIView) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return False
        # A view that names no scope admits no key: forgetting it must not open the door.
        required: list[str] = getattr(view, "required_scopes", [])
        return bool(required) and all(scope in key.scopes for scope in required)


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "consent.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <prefix>.<secret>`, as printed once by `manage.py create_api_key`.",
        }
