from __future__ import annotations

from django.urls import path

from retention import views

app_name = "retention"
urlpatterns = [
    path("service-termination/", views.termination, name="termination"),
]
