from __future__ import annotations

from django.urls import URLPattern, path

from dsar import views

# Mounted at /account/cancel/ (config/urls.py): part of the account settings, not of /requests/.
app_name = "cancellation"
urlpatterns: list[URLPattern] = [
    path("", views.cancellation, name="start"),
    path("undo/", views.cancellation_undo, name="undo"),
]
