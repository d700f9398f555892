from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.fields import BlindIndexField, EncryptedTextField


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create(self, email: str, password: str | None, **extra: Any) -> User:
        if not email:
            raise ValueError("An e-mail address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.update(is_staff=True, is_superuser=True)
        return self._create(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A login. Signs in by e-mail. The person behind it, as far as their personal data is
    concerned, is the linked DataSubject (staff have none)."""

    email = models.EmailField(_("e-mail address"), unique=True)
    display_name = models.CharField(_("display name"), max_length=150, blank=True)
    language = models.CharField(
        _("language"), max_length=10, choices=settings.LANGUAGES, default=settings.LANGUAGE_CODE
    )
    is_staff = models.BooleanField(_("staff status"), default=False)
    is_active = models.BooleanField(_("active"), default=True)
    date_joined = models.DateTimeField(_("date joined"), default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = []

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
        constraints = [models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci")]

    def __str__(self) -> str:
        return self.display_name or f"user #{self.pk}"


class DataSubject(models.Model):
    """The person the data is about: a user of the product, or someone without an account
    (a patient, a contact). Identifying values are encrypted under the subject's own key;
    the blind indexes let staff find a subject by exact e-mail, phone or ID number."""

    class Kind(models.TextChoices):
        ACCOUNT_HOLDER = "account", _("account holder")
        PATIENT = "patient", _("patient")
        CONTACT = "contact", _("contact")

    key_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="subject"
    )
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.ACCOUNT_HOLDER)
    full_name = EncryptedTextField(_("full name"), key_from="key_id")
    email = EncryptedTextField(_("e-mail"), key_from="key_id")
    email_index = BlindIndexField(source="email", kind="email")
    phone = EncryptedTextField(_("phone"), key_from="key_id")
    phone_index = BlindIndexField(source="phone", kind="phone")
    id_number = EncryptedTextField(_("ID number"), key_from="key_id")
    id_number_index = BlindIndexField(source="id_number", kind="id_number")
    birth_date = EncryptedTextField(_("birth date (YYYY-MM-DD)"), key_from="key_id")
    language = models.CharField(
        _("language"), max_length=10, choices=settings.LANGUAGES, default=settings.LANGUAGE_CODE
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    erased_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("data subject")
        verbose_name_plural = _("data subjects")
        permissions = [("view_sensitive", _("Can see unmasked personal data of data subjects"))]

    def __str__(self) -> str:
        return f"DS-{self.pk:06d}" if self.pk else "DS-new"

    @property
    def reference(self) -> str:
        return str(self)

    @property
    def is_erased(self) -> bool:
        return self.erased_at is not None
