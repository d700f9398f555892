"""Correction requests (PIPL Art. 46; seed 000 §4.2): the subject proposes new values for the
fields the data map marks correctable, staff decide per item, approved values reach the row
where they live (Quanyi's profile or the product's database) and only that row."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import translation

from accounts.models import DataSubject, User
from accounts.roles import AGENT, AUDITOR, DPO
from accounts.services import subject_find
from core.audit import SYSTEM, Actor
from core.models import AuditEntry
from dsar import corrections, notifications, sample_product, services
from dsar.models import CorrectionItem, DataSubjectRequest, OnBehalf, RequestType, Status
from tests import factories
from tests.conftest import ALL

pytestmark = pytest.mark.django_db(databases=ALL)

ZHANG = sample_product.Person(
    email="zhang@example.cn",
    phone="13800138000",
    name="张三",
    id_number="110101199003071234",
    birthday="1990-03-07",
    gender="男",
    native_place="北京市东城区",
)
WANG = sample_product.Person(
    email="wang@example.cn",
    phone="13700137000",
    name="王五",
    id_number="310101198001011111",
    birthday="1980-01-01",
    gender="男",
    native_place="上海市",
)
NEW_PHONE = "13900139000"
LIST = "/api/v1/requests/"


@pytest.fixture(autouse=True)
def _english_messages() -> Iterator[None]:
    """Service messages are asserted in English; pages pick their language per request."""
    with translation.override("en"):
        yield


# --- Helpers -------------------------------------------------------------------------------------


def rows_of(table: str, where: str = "1 = 1", params: list[Any] | None = None) -> list[dict[str, Any]]:
    with connections["product"].cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE {where} ORDER BY id", params or [])
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


def product_state() -> dict[str, list[dict[str, Any]]]:
    return {t: rows_of(t) for t in ("patients", "orders", "health_records")}


def patient_id(person: sample_product.Person) -> int:
    return int(rows_of("patients", "email = %s", [person.email])[0]["id"])


def orders_of(person: sample_product.Person) -> list[dict[str, Any]]:
    return rows_of("orders", "patient_id = %s", [patient_id(person)])


def account(person: sample_product.Person) -> User:
    user = cast(User, factories.UserFactory(email=person.email))
    factories.subject(
        user=user,
        email=person.email,
        phone=person.phone,
        full_name=person.name,
        id_number=person.id_number,
        birth_date=person.birthday,
    )
    return user


def subject_of(user: User) -> DataSubject:
    return DataSubject.objects.get(user=user)


def correction_request(user: User, *, verified: bool = True) -> DataSubjectRequest:
    """A correction request by an account holder for themselves (verified: they had just
    reauthenticated)."""
    return services.request_submit(
        actor=Actor.of(user),
        type=RequestType.CORRECTION,
        subject=subject_of(user),
        user=user,
        details="我的资料有误",
        reauthenticated=verified,
    )


def propose(dsr: DataSubjectRequest, **change: Any) -> CorrectionItem:
    defaults: dict[str, Any] = {"target": "health_app", "table": "orders", "column": "phone", "reason": ""}
    defaults.update(change)
    defaults.setdefault("row", None)
    assert dsr.user is not None
    return corrections.correction_propose(request=dsr, actor=Actor.of(dsr.user), **defaults)


def stored() -> tuple[int, int]:
    return CorrectionItem.objects.count(), AuditEntry.objects.count()


@pytest.fixture
def zhang(product: None) -> User:
    sample_product.demo_load([ZHANG, WANG])
    return account(ZHANG)


@pytest.fixture
def agent() -> User:
    return factories.staff(AGENT)


# --- Approved, rejected, applied ----------------------------------------------------------------


def test_an_approved_product_correction_reaches_that_row_only(zhang: User, agent: User) -> None:
    dsr = correction_request(zhang)
    first, second = orders_of(ZHANG)
    wang_before = orders_of(WANG)
    item = propose(dsr, row=first["id"], value="+86 139-0013-9000", reason="换号了")
    assert item.decision == CorrectionItem.Decision.PENDING
    assert (item.current_value, item.proposed_value, item.reason) == (ZHANG.phone, NEW_PHONE, "换号了")
    assert orders_of(ZHANG)[0]["phone"] == ZHANG.phone  # nothing is written before a decision

    item = corrections.correction_decide(item=item, actor=Actor.of(agent), approve=True, reason="")

    assert item.decision == CorrectionItem.Decision.APPROVED
    assert item.decided_by_id == agent.pk and item.decided_at is not None
    assert item.applied_at is not None and item.rows_changed == 1
    after_first, after_second = orders_of(ZHANG)
    assert after_first == {**first, "phone": NEW_PHONE}
    assert after_second == second
    assert orders_of(WANG) == wang_before


def test_applying_twice_changes_nothing_more(zhang: User, agent: User) -> None:
    dsr = correction_request(zhang)
    item = propose(
        dsr, table="health_records", column="weight_kg", row=rows_of("health_records")[0]["id"], value="68.5"
    )
    item = corrections.correction_decide(item=item, actor=Actor.of(agent), approve=True)
    state = product_state()
    applied_at = item.applied_at

    again = corrections.correction_apply(item=item, actor=Actor.of(agent))
    decided_again = corrections.correction_decide(item=item, actor=Actor.of(agent), approve=True)

    assert rows_of("health_records")[0]["weight_kg"] == 68.5
    assert product_state() == state
    assert again.applied_at == decided_again.applied_at == applied_at
    assert AuditEntry.objects.filter(action="correction.applied").count() == 1
    assert AuditEntry.objects.filter(action="correction.approved").count() == 1


def test_the_identity_table_is_corrected_in_the_subjects_rows(zhang: User, agent: User) -> None:
    dsr = correction_request(zhang)
    wang = rows_of("patients", "email = %s", [WANG.email])

    item = propose(dsr, table="patients", column="native_place", value="浙江省杭州市")
    corrections.correction_decide(item=item, actor=Actor.of(agent), approve=True)

    assert item.row is None and item.current_value == ZHANG.native_place
    assert rows_of("patients", "email = %s", [ZHANG.email])[0]["native_place"] == "浙江省杭州市"
    assert rows_of("patients", "email = %s", [WANG.email]) == wang


def test_a_rejected_correction_changes_nothing_and_the_requester_reads_why(
    zhang: User, agent: User, client: Client
) -> None:
    dsr = correction_request(zhang)
    item = propose(dsr, row=orders_of(ZHANG)[1]["id"], value=NEW_PHONE)
    state = product_state()

    with pytest.raises(ValidationError) as no_reason:
        corrections.correction_decide(item=item, actor=Actor.of(agent), approve=False, reason=" ")
    item = corrections.correction_decide(
        item=item, actor=Actor.of(agent), approve=False, reason="该订单已签收，收货电话无法再修改。"
    )

    assert "reason" in no_reason.value.message_dict
    assert item.decision == CorrectionItem.Decision.REJECTED and item.applied_at is None
    assert product_state() == state
    client.force_login(zhang)
    page = client.get(reverse("dsar:detail", args=[dsr.pk]), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "该订单已签收，收货电话无法再修改。" in page
    assert "Not changed" in page
    api = client.get(f"{LIST}{dsr.pk}/").json()
    assert [(c["outcome"], c["decision_reason"]) for c in api["corrections"]] == [
        ("refused", "该订单已签收，收货电话无法再修改。")
    ]


def test_a_profile_correction_updates_the_subject_and_its_blind_index(zhang: User, agent: User) -> None:
    dsr = correction_request(zhang)
    subject = subject_of(zhang)

    phone = propose(dsr, target="quanyi", table="profile", column="phone", value="139 0013 9000")
    email = propose(dsr, target="quanyi", table="", column="email", value="Zhang.San@Example.cn")
    for item in (phone, email):
        corrections.correction_decide(item=item, actor=Actor.of(agent), approve=True)

    subject.refresh_from_db()
    assert (subject.phone, subject.email) == (NEW_PHONE, "zhang.san@example.cn")
    assert subject_find(phone="+86 139 0013 9000") == subject
    assert subject_find(email="ZHANG.SAN@example.cn") == subject
    assert subject_find(phone=ZHANG.phone) is None
    assert AuditEntry.objects.filter(action="subject.updated", object_id=str(subject.pk)).count() == 2


# --- Refused proposals store nothing -------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            {"table": "health_records", "column": "diagnosis", "row": "<zhang record>"},
            "column",
            "cannot be corrected",
        ),
        ({"table": "orders", "column": "order_no", "row": "<zhang order>"}, "column", "cannot be corrected"),
        ({"table": "orders", "column": "colour", "row": "<zhang order>"}, "column", "There is no field"),
        ({"table": "orders", "column": "id", "row": "<zhang order>"}, "column", "cannot be corrected"),
        ({"table": "invoices", "column": "phone"}, "table", "There is no table"),
        ({"target": "crm", "table": "people", "column": "phone"}, "target", "Unknown place"),
        ({"row": "<wang order>"}, "row", "is not one of yours"),
        ({"row": "999999"}, "row", "is not one of yours"),
        ({"row": "x" * 300}, "row", "is not one of yours"),
        ({"row": None}, "row", "Say which record"),
        ({"target": "quanyi", "table": "profile", "column": "id_number"}, "column", "cannot be corrected"),
        ({"target": "quanyi", "table": "profile", "column": "key_id"}, "column", "cannot be corrected"),
        ({"target": "quanyi", "table": "accounts", "column": "phone"}, "table", "one table"),
        ({"target": "quanyi", "table": "profile", "column": "phone", "row": "1"}, "row", "leave “row” empty"),
    ],
)
def test_a_field_that_is_not_correctable_or_not_theirs_is_refused_and_nothing_is_stored(
    zhang: User, change: dict[str, Any], field: str, message: str
) -> None:
    dsr = correction_request(zhang)
    placeholders = {
        "<zhang order>": orders_of(ZHANG)[0]["id"],
        "<wang order>": orders_of(WANG)[0]["id"],
        "<zhang record>": rows_of("health_records", "patient_id = %s", [patient_id(ZHANG)])[0]["id"],
    }
    change = {k: placeholders.get(v, v) if isinstance(v, str) else v for k, v in change.items()}
    change.setdefault("row", placeholders["<zhang order>"])
    before, state = stored(), product_state()

    with pytest.raises(ValidationError) as err:
        propose(dsr, value="13912345678", **change)

    assert field in err.value.message_dict, err.value.message_dict
    assert message in " ".join(err.value.message_dict[field])
    assert stored() == before
    assert product_state() == state


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"target": "quanyi", "column": "email", "value": "not-an-address"}, "valid e-mail"),
        ({"target": "quanyi", "column": "phone", "value": "12345"}, "valid phone"),
        ({"target": "quanyi", "column": "phone", "value": "138-abc-8000"}, "valid phone"),
        ({"target": "quanyi", "column": "birth_date", "value": "07/03/1990"}, "YYYY-MM-DD"),
        ({"target": "quanyi", "column": "birth_date", "value": "1990-02-30"}, "YYYY-MM-DD"),
        ({"target": "quanyi", "column": "birth_date", "value": "2999-01-01"}, "between 1900 and today"),
        ({"target": "quanyi", "column": "full_name", "value": "   "}, "Enter the new value"),
        ({"target": "quanyi", "column": "full_name", "value": "张" * 101}, "At most 100 characters"),
        ({"target": "quanyi", "column": "full_name", "value": "张\x00三"}, "control characters"),
        ({"target": "quanyi", "column": "full_name", "value": "张三"}, "already the value we hold"),
        ({"table": "patients", "column": "birthday", "value": "1990-3-7"}, "YYYY-MM-DD"),
        ({"table": "patients", "column": "email", "value": "zhang@"}, "valid e-mail"),
        ({"table": "patients", "column": "phone", "value": "+86 138 0013 8000"}, "already the value we hold"),
        ({"table": "patients", "column": "id_number", "value": "1101-0119"}, "digits and letters"),
        ({"table": "health_records", "column": "height_cm", "row": "<record>", "value": "tall"}, "a number"),
        ({"table": "health_records", "column": "height_cm", "row": "<record>", "value": "1e309"}, "a number"),
        ({"table": "health_records", "column": "height_cm", "row": "<record>", "value": "NaN"}, "a number"),
        (
            {"table": "orders", "column": "postal_code", "row": "<order>", "value": "12345678901"},
            "At most 10",
        ),
        (
            {"table": "orders", "column": "address", "row": "<order>", "value": {"a": 1}},
            "Enter the new value",
        ),
    ],
)
def test_a_value_in_the_wrong_format_is_refused_with_a_clear_message(
    zhang: User, change: dict[str, Any], message: str
) -> None:
    dsr = correction_request(zhang)
    rows = {
        "<order>": orders_of(ZHANG)[0]["id"],
        "<record>": rows_of("health_records", "patient_id = %s", [patient_id(ZHANG)])[0]["id"],
    }
    change = {k: rows.get(v, v) if isinstance(v, str) else v for k, v in change.items()}
    if change.get("target") == "quanyi":
        change["table"] = "profile"
    before = stored()

    with pytest.raises(ValidationError) as err:
        propose(dsr, **change)

    assert message in " ".join(err.value.message_dict["value"]), err.value.message_dict
    assert stored() == before


def test_a_second_proposal_for_the_same_field_waits_for_the_first(zhang: User, agent: User) -> None:
    dsr = correction_request(zhang)
    order = orders_of(ZHANG)[0]["id"]
    first = propose(dsr, row=order, value=NEW_PHONE)
    other_request = correction_request(zhang)

    with pytest.raises(ValidationError) as err:
        propose(other_request, row=order, value="13911112222")
    propose(other_request, row=orders_of(ZHANG)[1]["id"], value="13911112222")  # another row is fine

    assert dsr.reference in " ".join(err.value.message_dict["column"])
    corrections.correction_decide(item=first, actor=Actor.of(agent), approve=False, reason="信息不符")
    assert propose(other_request, row=order, value="13911112222").pk


def test_field_level_changes_are_for_the_account_holder_acting_for_themselves(zhang: User) -> None:
    access = services.request_submit(
        actor=Actor.of(zhang), type=RequestType.ACCESS, subject=subject_of(zhang), user=zhang
    )
    public = services.request_submit(
        actor=Actor("anonymous"),
        type=RequestType.CORRECTION,
        subject=factories.subject(email="li@example.cn"),
        requester_email="li@example.cn",
        details="我的电话号码错了",
    )
    closed = services.request_withdraw(request=correction_request(zhang), actor=SYSTEM)
    before = stored()

    for dsr, message in [
        (access, "Only correction requests"),
        (public, "account holders"),
        (closed, "takes no new corrections"),
    ]:
        with pytest.raises(ValidationError) as err:
            corrections.correction_propose(
                request=dsr,
                actor=SYSTEM,
                target="quanyi",
                table="profile",
                column="phone",
                row=None,
                value=NEW_PHONE,
            )
        assert message in " ".join(err.value.messages)
    assert stored() == before


# --- Deciding and completing ---------------------------------------------------------------------


def test_the_request_cannot_complete_while_an_item_is_pending(zhang: User, agent: User) -> None:
    dsr = correction_request(zhang)
    item = propose(dsr, row=orders_of(ZHANG)[0]["id"], value=NEW_PHONE)

    with pytest.raises(services.TransitionError, match="Decide every proposed correction"):
        services.request_complete(request=dsr, actor=Actor.of(agent), answer="已处理")
    dsr.refresh_from_db()
    assert dsr.status == Status.VERIFIED

    corrections.correction_decide(item=item, actor=Actor.of(agent), approve=True)
    dsr = services.request_complete(request=dsr, actor=Actor.of(agent), answer="已处理")
    assert dsr.status == Status.COMPLETED


def test_corrections_are_decided_only_after_identity_is_verified(zhang: User, agent: User) -> None:
    dsr = correction_request(zhang, verified=False)
    item = propose(dsr, row=orders_of(ZHANG)[0]["id"], value=NEW_PHONE)
    state = product_state()

    with pytest.raises(services.TransitionError, match="identity is verified"):
        corrections.correction_decide(item=item, actor=Actor.of(agent), approve=True)

    item.refresh_from_db()
    assert item.decision == CorrectionItem.Decision.PENDING
    assert product_state() == state


def test_a_decision_is_not_changed_afterwards(zhang: User, agent: User) -> None:
    dsr = correction_request(zhang)
    item = propose(dsr, row=orders_of(ZHANG)[0]["id"], value=NEW_PHONE)
    corrections.correction_decide(item=item, actor=Actor.of(agent), approve=False, reason="不符")
    state = product_state()

    with pytest.raises(services.TransitionError, match="already"):
        corrections.correction_decide(item=item, actor=Actor.of(agent), approve=True)

    assert product_state() == state


def test_the_completion_email_says_per_item_what_changed_and_why_not_without_values(
    zhang: User, agent: User
) -> None:
    dsr = correction_request(zhang)
    DataSubjectRequest.objects.filter(pk=dsr.pk).update(language="en")
    changed = propose(dsr, row=orders_of(ZHANG)[0]["id"], value=NEW_PHONE)
    refused = propose(dsr, table="patients", column="native_place", value="浙江省杭州市", reason="搬家了")
    corrections.correction_decide(item=changed, actor=Actor.of(agent), approve=True)
    corrections.correction_decide(item=refused, actor=Actor.of(agent), approve=False, reason="需要户籍证明")
    services.request_complete(request=dsr, actor=Actor.of(agent), answer="已按您的要求处理。")

    notifications.send_requester_email(request_id=dsr.pk, kind="completed")

    body = mail.outbox[-1].body
    assert f"Orders and delivery · phone (#{changed.row}): Changed" in body
    assert "Identity · native place: Not changed" in body
    assert "Why: 需要户籍证明" in body
    for value in (NEW_PHONE, ZHANG.phone, "浙江省杭州市", ZHANG.native_place, "搬家了"):
        assert value not in body


# --- Audit ----------------------------------------------------------------------------------------


def test_propose_decide_and_apply_are_audited_without_values(zhang: User, agent: User) -> None:
    dsr = correction_request(zhang)
    order = orders_of(ZHANG)[0]["id"]
    item = propose(dsr, row=order, value=NEW_PHONE, reason="旧号码已停用")
    other = propose(dsr, target="quanyi", table="profile", column="full_name", value="张叁")
    corrections.correction_decide(item=item, actor=Actor.of(agent), approve=True, reason="已核实")
    corrections.correction_decide(item=other, actor=Actor.of(agent), approve=False, reason="与证件不符")

    entries = list(
        AuditEntry.objects.filter(object_type="dsar.datasubjectrequest", object_id=str(dsr.pk))
        .filter(action__startswith="correction.")
        .order_by("seq")
    )

    assert [(e.action, e.data["item"]) for e in entries] == [
        ("correction.proposed", item.pk),
        ("correction.proposed", other.pk),
        ("correction.approved", item.pk),
        ("correction.applied", item.pk),
        ("correction.rejected", other.pk),
    ]
    assert entries[0].data == {
        "item": item.pk,
        "target": "health_app",
        "table": "orders",
        "column": "phone",
        "row": str(order),
    }
    assert entries[3].data["rows"] == 1
    assert [e.actor_id for e in entries] == [str(zhang.pk)] * 2 + [str(agent.pk)] * 3
    text = json.dumps([e.data for e in AuditEntry.objects.all()], ensure_ascii=False)
    for value in (NEW_PHONE, ZHANG.phone, "旧号码已停用", "张叁", ZHANG.name, "已核实", "与证件不符"):
        assert value not in text


# --- The admin --------------------------------------------------------------------------------------


def correction_url(item: CorrectionItem, action: str) -> str:
    return reverse("admin:dsar_datasubjectrequest_correction", args=[item.request_id, item.pk, action])


@pytest.mark.parametrize(("role", "clear"), [(AGENT, False), (DPO, True), (AUDITOR, False)])
def test_the_change_page_masks_values_unless_the_staff_member_may_see_them(
    zhang: User, client: Client, role: str, clear: bool
) -> None:
    dsr = correction_request(zhang)
    item = propose(dsr, row=orders_of(ZHANG)[0]["id"], value=NEW_PHONE, reason="换号了")
    client.force_login(factories.staff(role))

    html = client.get(reverse("admin:dsar_datasubjectrequest_change", args=[dsr.pk])).content.decode()

    assert 'id="dsar-corrections"' in html
    assert (NEW_PHONE in html) is clear
    assert (ZHANG.phone in html) is clear
    assert ("139****9000" in html) is not clear
    assert ("138****8000" in html) is not clear
    assert "换号了" in html
    offered = correction_url(item, "approve") in html and correction_url(item, "reject") in html
    assert offered is (role != AUDITOR)


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("role", ["anonymous", "subject", AGENT, DPO, AUDITOR])
def test_deciding_in_the_admin_permission_matrix(zhang: User, client: Client, role: str, method: str) -> None:
    dsr = correction_request(zhang)
    item = propose(dsr, row=orders_of(ZHANG)[0]["id"], value=NEW_PHONE)
    if role == "subject":
        client.force_login(zhang)
    elif role != "anonymous":
        client.force_login(factories.staff(role))
    state, audit = product_state(), AuditEntry.objects.count()
    url = correction_url(item, "approve")

    response = client.get(url) if method == "get" else client.post(url, {"reason": ""})

    item.refresh_from_db()
    if role in ("anonymous", "subject"):
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    elif role == AUDITOR:
        assert response.status_code == 403
    elif method == "get":
        assert response.status_code == 200 and b'method="post"' in response.content
    else:
        assert response.status_code == 302
        assert response["Location"] == reverse("admin:dsar_datasubjectrequest_change", args=[dsr.pk])
    if method == "post" and role in (AGENT, DPO):
        assert item.decision == CorrectionItem.Decision.APPROVED and item.rows_changed == 1
        assert orders_of(ZHANG)[0]["phone"] == NEW_PHONE
    else:
        assert item.decision == CorrectionItem.Decision.PENDING
        assert product_state() == state
        if role != DPO:  # the DPO's clear view of the form page is itself audited
            assert AuditEntry.objects.count() == audit


def test_rejecting_in_the_admin_needs_a_reason(zhang: User, client: Client, agent: User) -> None:
    dsr = correction_request(zhang)
    item = propose(dsr, row=orders_of(ZHANG)[0]["id"], value=NEW_PHONE)
    client.force_login(agent)

    empty = client.post(correction_url(item, "reject"), {"reason": ""}, HTTP_ACCEPT_LANGUAGE="en")
    done = client.post(correction_url(item, "reject"), {"reason": "订单已签收"})
    page = client.get(reverse("admin:dsar_datasubjectrequest_change", args=[dsr.pk])).content.decode()
    complete = client.post(
        reverse("admin:dsar_datasubjectrequest_act", args=[dsr.pk, "complete"]), {"answer": "处理完毕"}
    )

    assert empty.status_code == 200 and empty.context["form"].errors["reason"]
    assert done.status_code == 302
    item.refresh_from_db()
    assert (item.decision, item.decision_reason) == (CorrectionItem.Decision.REJECTED, "订单已签收")
    assert correction_url(item, "approve") not in page  # decided: no more buttons
    assert complete.status_code == 302
    assert DataSubjectRequest.objects.get(pk=dsr.pk).status == Status.COMPLETED


def test_completing_in_the_admin_with_a_pending_item_is_an_error_message(
    zhang: User, client: Client, agent: User
) -> None:
    dsr = correction_request(zhang)
    propose(dsr, row=orders_of(ZHANG)[0]["id"], value=NEW_PHONE)
    client.force_login(agent)

    response = client.post(
        reverse("admin:dsar_datasubjectrequest_act", args=[dsr.pk, "complete"]),
        {"answer": "处理完毕"},
        HTTP_ACCEPT_LANGUAGE="en",
        follow=True,
    )

    assert "Decide every proposed correction" in response.content.decode()
    assert DataSubjectRequest.objects.get(pk=dsr.pk).status == Status.VERIFIED


def test_an_item_of_another_request_is_not_reachable_through_this_one(
    zhang: User, client: Client, agent: User
) -> None:
    item = propose(correction_request(zhang), row=orders_of(ZHANG)[0]["id"], value=NEW_PHONE)
    other = correction_request(zhang)
    client.force_login(agent)

    url = reverse("admin:dsar_datasubjectrequest_correction", args=[other.pk, item.pk, "approve"])

    assert client.post(url).status_code == 404
    assert client.get(correction_url(item, "telepathy")).status_code == 404
    item.refresh_from_db()
    assert item.is_pending


# --- The portal -------------------------------------------------------------------------------------


def test_the_portal_lists_the_subjects_own_fields_with_their_values(zhang: User, client: Client) -> None:
    client.force_login(zhang)

    page = client.get(reverse("dsar:submit", args=[RequestType.CORRECTION]), HTTP_ACCEPT_LANGUAGE="en")

    html = page.content.decode()
    assert page.status_code == 200
    assert 'id="corrections"' in html
    for order in orders_of(ZHANG):
        assert order["order_no"] in html and order["address"] in html
    for order in orders_of(WANG):
        assert order["order_no"] not in html and order["address"] not in html
    assert ZHANG.native_place in html
    assert "diagnosis" not in html  # not correctable: not offered


def test_a_subject_submits_new_values_from_the_portal(zhang: User, client: Client) -> None:
    client.force_login(zhang)
    order = orders_of(ZHANG)[1]["id"]
    url = reverse("dsar:submit", args=[RequestType.CORRECTION])

    response = client.post(
        url,
        {
            "details": "",
            "on_behalf": OnBehalf.SELF,
            f"c-new:health_app.orders.phone.{order}": "139 0013 9000",
            f"c-why:health_app.orders.phone.{order}": "换号了",
            "c-new:quanyi.profile.birth_date.": "1990-03-08",
        },
    )

    assert response.status_code == 302, response.context and response.context["changes_form"].errors
    dsr = DataSubjectRequest.objects.get(user=zhang)
    assert response["Location"] == reverse("dsar:detail", args=[dsr.pk])
    items = {(i.target, i.column, i.row): i for i in dsr.corrections.all()}
    assert set(items) == {("health_app", "phone", str(order)), ("quanyi", "birth_date", None)}
    assert items["health_app", "phone", str(order)].proposed_value == NEW_PHONE
    assert items["health_app", "phone", str(order)].reason == "换号了"
    detail = client.get(response["Location"], HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Waiting for our decision" in detail and NEW_PHONE in detail


def test_a_bad_value_in_the_portal_is_a_form_error_and_nothing_is_stored(zhang: User, client: Client) -> None:
    client.force_login(zhang)
    order = orders_of(ZHANG)[0]["id"]
    requests_before = DataSubjectRequest.objects.count()

    response = client.post(
        reverse("dsar:submit", args=[RequestType.CORRECTION]),
        {
            "on_behalf": OnBehalf.SELF,
            f"c-new:health_app.orders.phone.{order}": "139 0013 9000",
            "c-new:quanyi.profile.email.": "not-an-address",
        },
        HTTP_ACCEPT_LANGUAGE="en",
    )

    assert response.status_code == 200
    errors = response.context["changes_form"].errors
    assert list(errors) == ["new:quanyi.profile.email."]
    assert "valid e-mail" in " ".join(errors["new:quanyi.profile.email."])
    assert DataSubjectRequest.objects.count() == requests_before
    assert not CorrectionItem.objects.exists()


def test_a_correction_with_neither_details_nor_values_asks_for_one(zhang: User, client: Client) -> None:
    client.force_login(zhang)

    response = client.post(
        reverse("dsar:submit", args=[RequestType.CORRECTION]), {"on_behalf": OnBehalf.SELF}
    )

    assert response.status_code == 200
    assert response.context["form"].errors["details"]
    assert not DataSubjectRequest.objects.exists()


def test_people_without_an_account_keep_the_free_text_form(zhang: User, client: Client) -> None:
    page = client.get(reverse("dsar:submit", args=[RequestType.CORRECTION])).content.decode()

    assert 'id="corrections"' not in page
    assert ZHANG.native_place not in page


def test_the_owner_proposes_more_values_on_an_open_request(zhang: User, client: Client) -> None:
    dsr = correction_request(zhang)
    client.force_login(zhang)
    url = reverse("dsar:propose", args=[dsr.pk])

    assert url in client.get(reverse("dsar:detail", args=[dsr.pk])).content.decode()
    empty = client.post(url, {})
    response = client.post(url, {"c-new:health_app.patients.native_place.": "浙江省杭州市"})

    assert empty.status_code == 200 and empty.context["changes_form"].non_field_errors()
    assert response.status_code == 302
    assert dsr.corrections.get().proposed_value == "浙江省杭州市"


@pytest.mark.parametrize("role", ["anonymous", "other subject", AGENT])
def test_nobody_else_sees_or_proposes_on_someones_request(zhang: User, role: str) -> None:
    dsr = correction_request(zhang)
    item = propose(dsr, row=orders_of(ZHANG)[0]["id"], value=NEW_PHONE)
    client = Client()
    if role == "other subject":
        client.force_login(account(WANG))
    elif role == AGENT:
        client.force_login(factories.staff(AGENT))
    before = stored()
    change = {"target": "health_app", "table": "patients", "column": "native_place", "value": "杭州"}

    detail = client.get(reverse("dsar:detail", args=[dsr.pk]))
    page = client.get(reverse("dsar:propose", args=[dsr.pk]))
    posted = client.post(
        reverse("dsar:propose", args=[dsr.pk]), {"c-new:health_app.patients.native_place.": "杭州"}
    )
    api_detail = client.get(f"{LIST}{dsr.pk}/")
    api_post = client.post(f"{LIST}{dsr.pk}/changes/", {"changes": [change]}, content_type="application/json")

    if role == "anonymous":
        assert detail.status_code == page.status_code == posted.status_code == 302  # to the login page
        assert api_detail.status_code == api_post.status_code == 403
    elif role == AGENT:
        assert (detail.status_code, page.status_code, posted.status_code) == (404, 404, 404)
        assert api_detail.status_code == api_post.status_code == 403
    else:
        assert (detail.status_code, page.status_code, posted.status_code) == (404, 404, 404)
        assert api_detail.status_code == api_post.status_code == 404
    assert stored() == before
    assert NEW_PHONE not in detail.content.decode() + api_detail.content.decode()
    assert item.proposed_value == NEW_PHONE


# --- The API ----------------------------------------------------------------------------------------


def test_the_api_creates_a_correction_request_with_changes(zhang: User, client: Client) -> None:
    client.force_login(zhang)
    fields = client.get("/api/v1/correctable-fields/").json()
    order = next(f for f in fields["correctable"] if f["table"] == "orders" and f["column"] == "address")
    assert order["current"] == orders_of(ZHANG)[0]["address"]

    response = client.post(
        LIST,
        {
            "type": "correction",
            "changes": [
                {
                    "target": "health_app",
                    "table": "orders",
                    "column": "address",
                    "row": int(order["row"]),
                    "value": "杭州市西湖区文三路 1 号",
                    "reason": "地址写错了",
                },
                {"target": "quanyi", "column": "full_name", "value": "张叁"},
            ],
        },
        content_type="application/json",
        HTTP_ACCEPT_LANGUAGE="en",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert [(c["table"], c["column"], c["row"], c["outcome"]) for c in body["corrections"]] == [
        ("orders", "address", order["row"], "pending"),
        ("profile", "full_name", None, "pending"),
    ]
    dsr = DataSubjectRequest.objects.get(pk=body["id"])
    assert dsr.type == RequestType.CORRECTION and dsr.corrections.count() == 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"target": "quanyi", "column": "email", "value": "nope"}, "value"),
        (
            {
                "target": "health_app",
                "table": "health_records",
                "column": "diagnosis",
                "row": 1,
                "value": "无",
            },
            "column",
        ),
        ({"target": "health_app", "table": "orders", "column": "phone", "value": "13900139000"}, "row"),
        ({"target": "quanyi", "column": "phone"}, "value"),
        ({"target": "quanyi", "column": "phone", "value": ["1"]}, "value"),
        ({"target": "quanyi", "column": "phone", "value": "1" * 1001}, "value"),
    ],
)
def test_a_bad_change_answers_400_naming_the_field_and_stores_nothing(
    zhang: User, client: Client, change: dict[str, Any], field: str
) -> None:
    client.force_login(zhang)
    good = {"target": "quanyi", "column": "full_name", "value": "张叁"}

    response = client.post(
        LIST, {"type": "correction", "changes": [good, change]}, content_type="application/json"
    )

    assert response.status_code == 400, response.content
    errors = response.json()["changes"]
    assert errors[0] == {} and field in errors[1], errors
    assert not DataSubjectRequest.objects.exists()
    assert not CorrectionItem.objects.exists()


def test_changes_on_a_request_of_another_type_answer_400(zhang: User, client: Client) -> None:
    client.force_login(zhang)

    response = client.post(
        LIST,
        {"type": "access", "changes": [{"target": "quanyi", "column": "full_name", "value": "张叁"}]},
        content_type="application/json",
    )

    assert response.status_code == 400
    assert "changes" in response.json()
    assert not DataSubjectRequest.objects.exists()


def test_the_api_adds_changes_to_an_open_request_and_refuses_a_closed_one(
    zhang: User, client: Client
) -> None:
    dsr = correction_request(zhang)
    client.force_login(zhang)
    url = f"{LIST}{dsr.pk}/changes/"
    change = {"target": "health_app", "table": "patients", "column": "gender", "value": "女"}

    added = client.post(url, {"changes": [change]}, content_type="application/json")
    services.request_withdraw(request=dsr, actor=Actor.of(zhang))
    closed = client.post(url, {"changes": [{**change, "value": "男"}]}, content_type="application/json")

    assert added.status_code == 201
    assert [c["column"] for c in added.json()["corrections"]] == ["gender"]
    assert closed.status_code == 409
    assert dsr.corrections.count() == 1


def test_the_correctable_fields_endpoint_lists_only_the_callers_data(zhang: User, client: Client) -> None:
    client.force_login(zhang)

    body = client.get("/api/v1/correctable-fields/").json()

    rows = {(f["table"], f["row"]) for f in body["correctable"] if f["target"] == "health_app"}
    assert {("orders", str(o["id"])) for o in orders_of(ZHANG)} <= rows
    assert not {("orders", str(o["id"])) for o in orders_of(WANG)} & rows
    assert all(f["column"] != "diagnosis" for f in body["correctable"])
    assert body["unavailable"] == []
    assert WANG.id_number not in json.dumps(body, ensure_ascii=False)


def test_the_schema_documents_the_correction_endpoints(tmp_path: Any) -> None:
    from django.core.management import call_command

    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = target.read_text()
    for path in ("/api/v1/requests/{id}/changes/:", "/api/v1/correctable-fields/:"):
        assert path in schema
    assert "    Change:" in schema and "    Correction:" in schema


# --- Recipients ---------------------------------------------------------------------------------------


def test_recipients_are_told_after_an_applied_value_is_committed(
    zhang: User, agent: User, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    told: list[int] = []
    monkeypatch.setattr(corrections, "_tell_recipients", lambda item: told.append(item.pk))
    dsr = correction_request(zhang)
    approved = propose(dsr, row=orders_of(ZHANG)[0]["id"], value=NEW_PHONE)
    rejected = propose(dsr, table="patients", column="gender", value="女")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        corrections.correction_decide(item=approved, actor=Actor.of(agent), approve=True)
        corrections.correction_decide(item=rejected, actor=Actor.of(agent), approve=False, reason="不符")
        assert told == []  # not before the commit
    for callback in callbacks:
        callback()

    assert told == [approved.pk]


def test_recipients_holding_the_category_get_a_correction_notice_with_the_new_value(
    zhang: User, agent: User, django_capture_on_commit_callbacks: Any
) -> None:
    from core.models import NoticeKind, RecipientNotice
    from core.recipients import disclosure_record, notice_personal

    subject = subject_of(zhang)
    made = {}
    for code, categories in (("shunda", ["orders_delivery"]), ("pay", ["payment_status"])):
        made[code] = factories.recipient(code=code, name=code, purpose="配送", categories=categories)
        disclosure_record(
            recipient=made[code],
            subject=subject,
            categories=categories,
            external_ref="R-1",
            actor=Actor("system"),
        )
    dsr = correction_request(zhang)
    item = propose(dsr, row=orders_of(ZHANG)[0]["id"], value=NEW_PHONE)

    with django_capture_on_commit_callbacks(execute=True):
        corrections.correction_decide(item=item, actor=Actor.of(agent), approve=True)

    notices = list(RecipientNotice.objects.filter(kind=NoticeKind.CORRECTION))
    assert [n.recipient.code for n in notices] == ["shunda"]  # only the holder of order data
    assert notices[0].reference == f"{dsr.reference}/C{item.pk}"
    assert NEW_PHONE not in str(notices[0].payload)  # sealed, not stored in clear
    assert notice_personal(notices[0])["fields"] == {"health_app.orders.phone": NEW_PHONE}
