from __future__ import annotations

from accounts.models import DataSubject, User
from core.datamap import Category as C
from core.datamap import Erase, Export, PersonalField, register

register(
    User,
    subject="subject",
    fields={
        "email": PersonalField(C.ACCOUNT, erase=Erase.HASH, note="login; replaced by a hash at cancellation"),
        "display_name": PersonalField(C.ACCOUNT),
        "password": PersonalField(C.ACCOUNT, export=Export.OMIT, erase=Erase.NULL, note="Argon2 hash only"),
        "last_login": PersonalField(C.USAGE, erase=Erase.NULL),
        "date_joined": PersonalField(C.ACCOUNT, erase=Erase.KEEP, note="account lifecycle evidence"),
        "language": PersonalField(C.ACCOUNT, erase=Erase.KEEP),
    },
    not_personal=["id", "is_staff", "is_active", "is_superuser"],
)

register(
    DataSubject,
    subject="",
    fields={
        "full_name": PersonalField(C.ACCOUNT, erase=Erase.NULL, correctable=True),
        "email": PersonalField(C.CONTACT, erase=Erase.NULL, correctable=True),
        "email_index": PersonalField(C.CONTACT, export=Export.OMIT, erase=Erase.NULL, note="keyed HMAC"),
        "phone": PersonalField(C.CONTACT, erase=Erase.NULL, correctable=True),
        "phone_index": PersonalField(C.CONTACT, export=Export.OMIT, erase=Erase.NULL, note="keyed HMAC"),
        "id_number": PersonalField(
            C.IDENTITY_DOCUMENTS, sensitive=True, export=Export.MASKED, erase=Erase.NULL
        ),
        "id_number_index": PersonalField(
            C.IDENTITY_DOCUMENTS, export=Export.OMIT, erase=Erase.NULL, note="keyed HMAC"
        ),
        "birth_date": PersonalField(C.BIRTH_GENDER_ORIGIN, erase=Erase.NULL, correctable=True),
        "language": PersonalField(C.ACCOUNT, erase=Erase.KEEP),
    },
    not_personal=["id", "key_id", "user", "kind", "created_at", "updated_at", "erased_at"],
    note="identifying values are encrypted under the subject's own key",
)

# Third-party models that hold personal data about account holders.
from allauth.account.models import EmailAddress, EmailConfirmation  # noqa: E402
from allauth.mfa.models import Authenticator  # noqa: E402
from django.contrib.admin.models import LogEntry  # noqa: E402
from django.contrib.sessions.models import Session  # noqa: E402

register(
    EmailAddress,
    subject="user.subject",
    fields={"email": PersonalField(C.ACCOUNT, erase=Erase.DELETE)},
    not_personal=["id", "user", "verified", "primary"],
)
register(
    EmailConfirmation,
    subject="email_address.user.subject",
    fields={"key": PersonalField(C.ACCOUNT, export=Export.OMIT, erase=Erase.DELETE)},
    not_personal=["id", "email_address", "created", "sent"],
)
register(
    Authenticator,
    subject="user.subject",
    fields={"data": PersonalField(C.ACCOUNT, export=Export.OMIT, erase=Erase.DELETE, note="TOTP secret")},
    not_personal=["id", "user", "type", "created_at", "last_used_at"],
)
register(
    Session,
    subject="",
    fields={"session_data": PersonalField(C.USAGE, export=Export.OMIT, erase=Erase.DELETE)},
    not_personal=["session_key", "expire_date"],
)
register(
    LogEntry,
    subject="",
    fields={
        "object_repr": PersonalField(
            C.INTERACTION,
            export=Export.OMIT,
            erase=Erase.KEEP,
            note="Quanyi's __str__ never holds personal data",
        )
    },
    not_personal=["id", "action_time", "user", "content_type", "object_id", "action_flag", "change_message"],
)
