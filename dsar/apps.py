from __future__ import annotations

from pathlib import Path
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.utils.translation import gettext_lazy as _


class DsarConfig(AppConfig):
    name = "dsar"
    verbose_name = _("Data-subject requests")

    def ready(self) -> None:
        checks.register(export_dir_check)
        from dsar import records

        records.register()  # requests and identity documents under Quanyi's retention rules
        from dsar.erasure import requests_close_on_termination
        from retention.erasure import before_seal_register

        # A person the service termination erases leaves no request open.
        before_seal_register(requests_close_on_termination)


def export_dir_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Access packages must never sit where the web server hands out files."""
    export_dir = Path(settings.QUANYI_EXPORT_DIR).resolve()
    served = [Path(settings.MEDIA_ROOT), *[Path(str(d)) for d in settings.STATICFILES_DIRS]]
    if settings.STATIC_ROOT:
        served.append(Path(settings.STATIC_ROOT))
    for folder in served:
        folder = folder.resolve()
        if export_dir == folder or folder in export_dir.parents or export_dir in folder.parents:
            return [
                checks.Error(
                    f"QUANYI_EXPORT_DIR ({export_dir}) overlaps {folder}, a folder the web server serves.",
                    hint="Point QUANYI_EXPORT_DIR at a private folder (default: var/exports).",
                    id="quanyi.E201",
                )
            ]
    return []
