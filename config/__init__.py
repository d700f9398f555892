from __future__ import annotations

# Load the Celery app whenever Django starts, so that `shared_task` binds to it and
# `delay_on_commit` works from web processes too.
from config.celery import app as celery_app

__all__ = ["celery_app"]
