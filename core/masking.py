from __future__ import annotations

from collections.abc import Callable

VIEW_SENSITIVE = "accounts.view_sensitive"


def mask_email(value: str | None) -> str:
    if not value or "@" not in value:
        return "—"
    local, domain = value.split("@", 1)
    return f"{local[:1]}***@{domain}"


def mask_phone(value: str | None) -> str:
    digits = "".join(ch for ch in value or "" if ch.isdigit())
    if len(digits) < 7:
        return "—" if not digits else "***"
    return f"{digits[:3]}****{digits[-4:]}"


def mask_name(value: str | None) -> str:
    if not value:
        return "—"
    return value[0] + "*" * max(1, len(value) - 1)


def mask_id_number(value: str | None) -> str:
    if not value:
        return "—"
    return f"{value[:3]}{'*' * max(1, len(value) - 7)}{value[-4:]}" if len(value) > 7 else "***"


def shown(value: str | None, mask: Callable[[str | None], str], *, unmasked: bool) -> str:
    """The value in clear for staff allowed to see it, masked for everyone else."""
    return (value or "—") if unmasked else mask(value)


def mask_reference(value: str | None) -> str:
    """Someone else's id for a person (a recipient's customer number): its ends only."""
    if not value:
        return "—"
    return f"{value[:2]}***{value[-2:]}" if len(value) > 6 else "***"
