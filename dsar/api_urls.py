from __future__ import annotations

urlpatterns: list = []  # REST API v1: filled in by the API work
