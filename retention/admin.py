from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.admin import ReadOnlyAdmin
from core.audit import Actor
from core.datamap import Category
from retention import services
from retention.models import Backup, Erasure, LegalHold, Tombstone


class LegalHoldForm(forms.ModelForm):  # type: ignore[type-arg]
    category = forms.ChoiceField(choices=[("", _("everything"))] + list(Category.choices), required=False)

    class Meta:
        model = LegalHold
        fields = ["subject", "category", "ground", "reason", "review_on"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("subject") and not data.get("category"):
            raise ValidationError(_("A hold covers a person, a category, or a category of one person."))
        review_on = data.get("review_on")
        if review_on and review_on < timezone.localdate():
            self.add_error("review_on", _("The review date cannot be in the past."))
        return data


@admin.register(LegalHold)
class LegalHoldAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = LegalHoldForm
    list_display = ["__str__", "subject", "category", "ground", "review_on", "set_at", "released_at"]
    list_filter = ["ground", "released_at"]
    raw_id_fields = ["subject"]
    actions = ["release"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # A hold is placed once and then only released: its scope and ground are evidence.
        return ["subject", "category", "ground", "reason", "review_on"] if obj else []

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: LegalHold, form: Any, change: bool) -> None:
        if change:
            return
        saved = services.hold_place(  # the form has already checked what the service checks
            actor=Actor.of(request.user),
            ground=obj.ground,
            reason=obj.reason,
            review_on=obj.review_on,
            subject=obj.subject,
            category=obj.category,
            set_by=request.user,  # type: ignore[arg-type]
        )
        obj.pk = saved.pk

    @admin.action(description=_("Release the selected holds"), permissions=["change"])
    def release(self, request: HttpRequest, queryset: QuerySet[LegalHold]) -> None:
        for hold in queryset:
            services.hold_release(hold=hold, actor=Actor.of(request.user), released_by=request.user)  # type: ignore[arg-type]
        messages.success(request, _("Released."))


@admin.register(Erasure)
class ErasureAdmin(ReadOnlyAdmin):
    list_display = [
        "__str__",
        "reference",
        "origin",
        "status",
        "rows_done",
        "rows_total",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "origin"]
    search_fields = ["=reference"]
    exclude = ["roots"]


@admin.register(Tombstone)
class TombstoneAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "subject_id_ref", "erased_at"]
    exclude = ["identifier_hashes", "roots"]


@admin.register(Backup)
class BackupAdmin(ReadOnlyAdmin):
    """The backup catalogue: taken, verified and rotated by `python manage.py backup` and the
    nightly job; restored only from the command line (`python manage.py restore`)."""

    list_display = ["__str__", "database", "taken_at", "size", "status", "verified_at", "expires_at"]
    list_filter = ["status", "database"]
    search_fields = ["=id", "=set_id"]
