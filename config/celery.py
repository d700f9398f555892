from __future__ import annotations

import os
from typing import Any

from celery import Celery
from kombu import Connection

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


class Quanyi(Celery):  # type: ignore[misc]
    """Publishing never waits long for the broker: connections for writing (the producer pool,
    in web processes and workers alike) use QUANYI_BROKER_PUBLISH_OPTIONS on top of the broker's
    transport options. A publish that fails leaves its outbox row for the relay (core.outbox)."""

    def connection_for_write(self, url: Any = None, **kwargs: Any) -> Connection:
        from django.conf import settings

        options = {**settings.QUANYI_BROKER_PUBLISH_OPTIONS, **(kwargs.pop("transport_options", None) or {})}
        return super().connection_for_write(url, transport_options=options, **kwargs)


app = Quanyi("quanyi")
# Every Celery setting lives in config/settings.py under the CELERY_ prefix.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
