from __future__ import annotations

from django.urls import URLPattern, path

from consent import api

# Mounted at /api/v1/ (config/urls.py), without a namespace. The PEM at
# /.well-known/quanyi-receipt-key.pem is `api.receipt_key_pem`, routed in config/urls.py.
urlpatterns: list[URLPattern] = [
    # First: the product asks this for every page it renders.
    path("consent-check/", api.ConsentCheck.as_view(), name="api-consent-check"),
    path("consent-check/bulk/", api.ConsentCheckBulk.as_view(), name="api-consent-check-bulk"),
    path("consents/", api.ConsentListRecord.as_view(), name="api-consent-list"),
    path("consents/history/", api.ConsentHistory.as_view(), name="api-consent-history"),
    path(
        "consents/events/<str:receipt_id>/receipt/",
        api.ConsentReceipt.as_view(),
        name="api-consent-receipt",
    ),
    path("policies/current/", api.CurrentPolicy.as_view(), name="api-policy-current"),
    path("receipt-key/", api.ReceiptKey.as_view(), name="api-receipt-key"),
]
