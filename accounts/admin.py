from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from accounts.models import DataSubject, User
from accounts.services import subject_find
from core.audit import Actor, audit_log
from core.masking import mask_email, mask_id_number, mask_name, mask_phone


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "display_name", "is_staff", "is_active", "date_joined"]
    search_fields = ["email", "display_name"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        (_("Profile"), {"fields": ("display_name", "language")}),
        (
            _("Permissions"),
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        (_("Dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


def _may_see(request: HttpRequest) -> bool:
    return request.user.has_perm("accounts.view_sensitive")


@admin.register(DataSubject)
class DataSubjectAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Personal values are masked unless the staff member holds `view_sensitive`; every
    unmasked view is audited. Search is exact, through the blind indexes."""

    list_display = ["__str__", "kind", "masked_email", "masked_phone", "language", "created_at", "erased_at"]
    list_filter = ["kind", "language"]
    search_fields = ["=id"]
    search_help_text = _("Exact e-mail, phone or ID number, or the DS number.")
    show_full_result_count = False
    readonly_fields = ["key_id", "user", "created_at", "updated_at", "erased_at"]
    fields = [
        "kind",
        "user",
        "full_name",
        "email",
        "phone",
        "id_number",
        "birth_date",
        "language",
        "key_id",
        "created_at",
        "updated_at",
        "erased_at",
    ]

    @admin.display(description=_("e-mail"))
    def masked_email(self, obj: DataSubject) -> str:
        return mask_email(obj.email)

    @admin.display(description=_("phone"))
    def masked_phone(self, obj: DataSubject) -> str:
        return mask_phone(obj.phone)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[DataSubject], search_term: str
    ) -> tuple[QuerySet[DataSubject], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.upper().startswith("DS-") and term[3:].isdigit():
            return queryset.filter(pk=int(term[3:])), False
        if "@" in term:
            found = subject_find(email=term)
        elif sum(ch.isdigit() for ch in term) >= 15 or term[-1:] in "Xx":
            found = subject_find(id_number=term)
        else:
            found = subject_find(phone=term)
        return queryset.filter(pk=found.pk if found else -1), False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if _may_see(request) and request.user.has_perm("accounts.change_datasubject"):
            return list(self.readonly_fields)
        return [*self.readonly_fields, "full_name", "email", "phone", "id_number", "birth_date"]

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            return None
        if not _may_see(request):
            obj.full_name = mask_name(obj.full_name)
            obj.email = mask_email(obj.email)
            obj.phone = mask_phone(obj.phone)
            obj.id_number = mask_id_number(obj.id_number)
            obj.birth_date = (obj.birth_date or "")[:4] + "-**-**" if obj.birth_date else None
        return obj

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        # Audited where the values are shown, not where the object is loaded: a refused delete
        # or a history page loads it too, and shows nothing in clear.
        if obj is not None and _may_see(request):
            audit_log(actor=Actor.of(request.user), action="subject.sensitive_viewed", obj=obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(self, request: HttpRequest, obj: DataSubject, form: Any, change: bool) -> None:
        from accounts.services import subject_update

        if not change:
            super().save_model(request, obj, form, change)
            return
        fresh = DataSubject.objects.get(pk=obj.pk)
        subject_update(
            actor=Actor.of(request.user),
            subject=fresh,
            **{
                k: form.cleaned_data[k] or None
                for k in form.changed_data
                if k in {"full_name", "email", "phone", "id_number", "birth_date", "language"}
            },
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # erasure goes through a request and its plan, never a delete button
