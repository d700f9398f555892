from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from core.masking import VIEW_SENSITIVE
from core.models import AuditEntry, JobState, OutboxMessage


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Records of what happened: nobody edits or deletes them through the admin."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SensitiveFieldsMixin:
    """Marks the object of a detail page `unmasked` when the staff member holds
    `accounts.view_sensitive`; display methods pass that to core.masking.shown."""

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        obj = super().get_object(request, object_id, from_field)  # type: ignore[misc]
        if obj is not None:
            obj.unmasked = request.user.has_perm(VIEW_SENSITIVE)
        return obj


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["seq", "at", "action", "actor_type", "actor_id", "object_type", "object_id"]
    list_filter = ["action", "actor_type", "object_type"]
    search_fields = ["=object_id", "=actor_id", "action"]
    show_full_result_count = False
    ordering = ["-seq"]


@admin.register(JobState)
class JobStateAdmin(ReadOnlyAdmin):
    list_display = ["name", "last_started_at", "last_finished_at", "last_status", "runs"]


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = ["task_name", "created_at", "dispatched_at", "attempts", "completed_at", "last_error"]
    list_filter = ["task_name"]
    show_full_result_count = False
