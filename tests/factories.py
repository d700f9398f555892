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


# The two recipients of the demo: a carrier told through a signed webhook, and a regulator
# told by hand (staff confirm the notice).
LOGISTICS_SECRET = "shunda-shared-secret-0123456789abcdef"


def logistics_recipient(webhook_url: str) -> Recipient:
    return recipient_save(
        recipient=Recipient(
            code="shunda",
            name="顺达物流有限公司",
            kind=RecipientKind.SHARED,
            purpose="配送订单商品",
            legal_basis=RecipientLegalBasis.CONTRACT,
            categories=["orders_delivery"],
            webhook_url=webhook_url,
        ),
        actor=SYSTEM,
        webhook_secret=LOGISTICS_SECRET,
    )


def regulator_recipient() -> Recipient:
    return recipient_save(
        recipient=Recipient(
            code="regulator",
            name="卫生健康委员会",
            kind=RecipientKind.DISCLOSED,
            purpose="依法报送",
            legal_basis=RecipientLegalBasis.LEGAL_DUTY,
            categories=["health"],
        ),
        actor=SYSTEM,
    )
