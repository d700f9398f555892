from __future__ import annotations

from django.urls import URLPattern, path

from dsar import api

# Mounted at /api/v1/ (config/urls.py), without a namespace.
urlpatterns: list[URLPattern] = [
    path("requests/", api.RequestListCreate.as_view(), name="api-request-list"),
    path("requests/<int:pk>/", api.RequestDetail.as_view(), name="api-request-detail"),
    path("requests/<int:pk>/withdraw/", api.RequestWithdraw.as_view(), name="api-request-withdraw"),
    path("requests/<int:pk>/changes/", api.RequestChanges.as_view(), name="api-request-changes"),
    path("correctable-fields/", api.CorrectableFields.as_view(), name="api-correctable-fields"),
    path("account/cancellation/", api.CancellationView.as_view(), name="api-account-cancellation"),
    path("requests/<int:pk>/export/", api.RequestExport.as_view(), name="api-request-export"),
    path(
        "requests/<int:pk>/export/download/",
        api.RequestExportDownload.as_view(),
        name="api-request-export-download",
    ),
    path("public/requests/", api.PublicRequestCreate.as_view(), name="api-public-request-create"),
    path(
        "public/requests/<int:pk>/verify/",
        api.PublicRequestVerify.as_view(),
        name="api-public-request-verify",
    ),
    path(
        "public/requests/<int:pk>/resend/",
        api.PublicRequestResend.as_view(),
        name="api-public-request-resend",
    ),
]
