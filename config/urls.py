from __future__ import annotations

from allauth.account.decorators import secure_admin_login
from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from core import views as core_views

# Staff sign in through allauth too, so MFA and rate limits protect the admin.
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]
admin.site.site_header = "Quanyi 权益"
admin.site.site_title = "Quanyi"

# Under /api/ an unmatched URL (e.g. a path id that is not a number) answers JSON like the API.
handler404 = core_views.not_found

urlpatterns = [
    # The API first: the consent check is answered for every page the product renders, and
    # the includes with an empty prefix below would otherwise each be tried before it.
    path("api/v1/", include("consent.api_urls")),
    path("api/v1/", include("dsar.api_urls")),
    path("", include("accounts.urls")),
    path("account/cancel/", include("dsar.cancellation_urls")),
    path("requests/", include("dsar.urls")),
    path("", include("consent.urls")),
    path("", include("retention.urls")),
    path("accounts/", include("allauth.urls")),
    # Before allauth's own routes, which they shadow: see core.views.no_phone_sign_in.
    re_path(
        r"^_allauth/(?:app|browser)/v1/(?:account/phone|auth/phone/verify|auth/phone/verify/resend)$",
        core_views.no_phone_sign_in,
        name="headless-no-phone",
    ),
    path("_allauth/", include("allauth.headless.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", core_views.healthz, name="healthz"),
]
if settings.QUANYI_BENCH_ENDPOINTS:  # benchmarks only: the baseline view `make bench` compares with
    urlpatterns.append(path("__bench__/json/", core_views.bench_bare_json))
