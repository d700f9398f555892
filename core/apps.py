from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Quanyi core"

    def ready(self) -> None:
        # Each app declares its personal data in <app>/personal_data.py; load them all once.
        autodiscover_modules("personal_data")
        # Data-map files of the product's databases must name real tables and columns.
        from django.core import checks

        from core.sources import sources_check

        checks.register(sources_check, checks.Tags.database)
