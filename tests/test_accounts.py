from __future__ import annotations

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from accounts.models import DataSubject, User
from accounts.roles import AGENT, AUDITOR, DPO, ROLES
from core.models import AuditEntry
from tests import factories
from tests.conftest import ALL

pytestmark = pytest.mark.django_db(databases=ALL)


def test_roles_hold_exactly_their_listed_permissions() -> None:
    for name, perms in ROLES.items():
        group = Group.objects.get(name=name)
        held = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}
        assert held == set(perms), name


def test_auditors_change_nothing() -> None:
    perms = ROLES[AUDITOR]
    assert all(p.split(".")[1].startswith("view_") for p in perms)


def test_signup_creates_an_unverified_user_and_their_data_subject(client: Client, mailoutbox) -> None:  # type: ignore[no-untyped-def]
    response = client.post(
        reverse("account_signup"),
        {
            "email": "New.Person@Example.cn",
            "password1": factories.PASSWORD,
            "password2": factories.PASSWORD,
            "phone": "138 0013 8000",
        },
    )

    assert response.status_code == 302
    user = User.objects.get(email="new.person@example.cn")
    subject = DataSubject.objects.get(user=user)
    assert subject.phone == "138 0013 8000"
    assert subject.email == "new.person@example.cn"
    assert not EmailAddress.objects.get(user=user).verified
    assert len(mailoutbox) == 1
    assert AuditEntry.objects.filter(action="subject.created", object_id=str(subject.pk)).exists()
    # Mandatory verification: no portal session until the e-mail is confirmed.
    assert client.get(reverse("portal:home")).context["user"].is_authenticated is False


def test_signup_with_a_bad_phone_is_refused_with_a_message(client: Client) -> None:
    response = client.post(
        reverse("account_signup"),
        {
            "email": "x@example.cn",
            "password1": factories.PASSWORD,
            "password2": factories.PASSWORD,
            "phone": "12",
        },
    )
    assert response.status_code == 200
    assert response.context["form"].errors["phone"]
    assert not User.objects.filter(email="x@example.cn").exists()


def test_passwords_are_hashed_with_argon2() -> None:
    user = factories.UserFactory()
    assert user.password.startswith("argon2")


def test_repeated_failed_logins_are_rate_limited_even_with_the_right_password_after(client: Client) -> None:
    user = factories.UserFactory()
    url = reverse("account_login")
    for _ in range(5):
        bad = client.post(url, {"login": user.email, "password": "wrong-password"}, HTTP_ACCEPT_LANGUAGE="en")
        assert bad.status_code == 200

    blocked = client.post(
        url, {"login": user.email, "password": factories.PASSWORD}, HTTP_ACCEPT_LANGUAGE="en"
    )

    assert blocked.status_code == 200
    assert "_auth_user_id" not in client.session
    assert "Too many failed login attempts" in " ".join(blocked.context["form"].non_field_errors())


def test_the_admin_login_goes_through_allauth(client: Client) -> None:
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


@pytest.mark.parametrize(
    ("role", "sees_clear", "can_edit"),
    [(AGENT, False, False), (DPO, True, True), (AUDITOR, False, False)],
)
def test_subject_admin_masks_personal_data_unless_permitted_and_audits_each_clear_view(
    client: Client, role: str, sees_clear: bool, can_edit: bool
) -> None:
    s = factories.subject(phone="13800138000", id_number="110101199003071234")
    client.force_login(factories.staff(role))

    page = client.get(reverse("admin:accounts_datasubject_change", args=[s.pk]))

    assert page.status_code == 200
    html = page.content.decode()
    assert ("13800138000" in html) is sees_clear
    assert ("138****8000" in html) is not sees_clear
    assert (
        AuditEntry.objects.filter(action="subject.sensitive_viewed", object_id=str(s.pk)).exists()
        is sees_clear
    )
    assert ('name="phone"' in html) is can_edit


def test_subject_admin_finds_by_exact_phone_without_decrypting(client: Client) -> None:
    s = factories.subject(phone="13800138000")
    factories.subject(phone="13900000000")
    client.force_login(factories.staff(AGENT))

    page = client.get(reverse("admin:accounts_datasubject_changelist"), {"q": "+86 138 0013 8000"})

    assert page.status_code == 200
    assert list(page.context["cl"].result_list) == [s]


def test_a_subject_cannot_open_the_admin(client: Client) -> None:
    user = factories.UserFactory()
    client.force_login(user)
    response = client.get(reverse("admin:accounts_datasubject_changelist"))
    assert response.status_code == 302


def test_dpo_edit_of_a_subject_is_audited_without_values(client: Client) -> None:
    s = factories.subject(phone="13800138000")
    client.force_login(factories.staff(DPO))
    url = reverse("admin:accounts_datasubject_change", args=[s.pk])
    form = client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k in form.fields}
    data.update(phone="13800138999", kind=s.kind, language=s.language)

    response = client.post(url, data)

    assert response.status_code == 302, response.content.decode()[:2000]
    assert DataSubject.objects.get(pk=s.pk).phone == "13800138999"
    entry = AuditEntry.objects.filter(action="subject.updated", object_id=str(s.pk)).get()
    assert entry.data == {"fields": ["phone"]}
    assert "13800138999" not in str(entry.data)
