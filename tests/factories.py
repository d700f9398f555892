from __future__ import annotations

from typing import Any

import factory
from allauth.account.models import EmailAddress
from django.contrib.auth.models import Group

from accounts.models import DataSubject, User
from accounts.services import subject_create
from core.audit import SYSTEM
from core.models import Recipient, RecipientKind, RecipientLegalBasis
from core.recipients import recipient_save

PASSWORD = "correct-horse-battery-9"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.cn")
    display_name = factory.Faker("name", locale="zh_CN")

    @classmethod
    def _create(cls, model_class: type[User], *args: Any, **kwargs: Any) -> User:
        password = kwargs.pop("password", PASSWORD)
        user = model_class.objects.create_user(*args, password=password, **kwargs)
        EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
        return user


def staff(role: str, **kwargs: Any) -> User:
    user = UserFactory(is_staff=True, **kwargs)
    user.groups.add(Group.objects.get(name=role))
    return user


def subject(*, user: User | None = None, **fields: Any) -> DataSubject:
    defaults: dict[str, Any] = {
        "email": user.email if user else "patient@example.cn",
        "full_name": "王五",
        "phone": "13712345678",
        "id_number": "11010519491231002X",
        "birth_date": "1949-12-31",
    }
    defaults.update(fields)
    return subject_create(actor=SYSTEM, user=user, **defaults)


# Recipients of personal data: by default the demo's carrier (顺达), told by signed webhook when
# given a URL; the demo's regulator is told by hand (staff confirm the notice).
LOGISTICS_SECRET = "shunda-shared-secret-0123456789abcdef"


def recipient(*, webhook_url: str = "", secret: str = LOGISTICS_SECRET, **fields: Any) -> Recipient:
    values: dict[str, Any] = {
        "code": "shunda",
        "name": "顺达物流有限公司",
        "kind": RecipientKind.SHARED,
        "purpose": "配送订单商品",
        "legal_basis": RecipientLegalBasis.CONTRACT,
        "categories": ["orders_delivery"],
    }
    values.update(fields)
    return recipient_save(
        recipient=Recipient(webhook_url=webhook_url, **values),
        actor=SYSTEM,
        webhook_secret=secret if webhook_url else None,
    )


def logistics_recipient(webhook_url: str) -> Recipient:
    return recipient(webhook_url=webhook_url)


def regulator_recipient() -> Recipient:
    return recipient(
        code="regulator",
        name="卫生健康委员会",
        kind=RecipientKind.DISCLOSED,
        purpose="依法报送",
        legal_basis=RecipientLegalBasis.LEGAL_DUTY,
        categories=["health"],
    )
