from __future__ import annotations

from django.urls import URLPattern, path

from dsar import views

app_name = "dsar"
urlpatterns: list[URLPattern] = [
    path("", views.mine, name="mine"),
    path("new/", views.new, name="new"),
    path("new/<slug:type>/", views.submit, name="submit"),
    path("<int:pk>/", views.detail, name="detail"),
    path("<int:pk>/withdraw/", views.withdraw, name="withdraw"),
    path("<int:pk>/information/", views.provide_info, name="provide_info"),
    path("<int:pk>/corrections/", views.propose, name="propose"),
    path("<int:pk>/download/", views.download, name="download"),
    # Without an account: the link in every e-mail, and the way back to a request.
    path("status/<str:reference>/", views.status, name="status"),
    path("find/", views.find, name="find"),
    path("code/", views.code, name="code"),
    path("code/resend/", views.resend, name="resend"),
]
