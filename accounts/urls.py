from __future__ import annotations

from django.urls import path

from accounts import views

app_name = "portal"
urlpatterns = [
    path("", views.home, name="home"),
    path("account/", views.account, name="account"),
]
