from __future__ import annotations

app_name = "dsar"
urlpatterns: list = []  # portal pages: filled in by the portal work
