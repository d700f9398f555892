from __future__ import annotations

from django.urls import path

from consent import views

app_name = "consent"
urlpatterns = [
    path("consents/", views.mine, name="mine"),
    path("consents/children/", views.children, name="children"),
    path("consents/children/<int:pk>/", views.child, name="child"),
    path("consents/receipt/<uuid:receipt_id>/", views.receipt, name="receipt"),
    path(".well-known/quanyi-receipt-key.pem", views.receipt_key, name="receipt_key"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("policy/", views.policy, name="policy"),
    path("policy/respond/", views.policy_respond, name="policy_respond"),
    path("policy/history/", views.policy_history, name="policy_history"),
    path("policy/diff/", views.policy_diff, name="policy_diff"),
    path("incidents/", views.incidents, name="incidents"),
    path("incidents/<int:pk>/", views.incident, name="incident"),
]
