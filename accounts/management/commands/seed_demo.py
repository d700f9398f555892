from __future__ import annotations

from typing import Any

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts.models import DataSubject, User
from accounts.roles import AGENT, AUDITOR, DPO
from accounts.services import subject_create, subject_find
from consent.demo import load_demo, purposes_link_recipients
from core.audit import SYSTEM
from core.demo import recipients_demo_load
from dsar import sample_product

DEMO_PASSWORD = "quanyi-demo-2026"  # noqa: S105 - printed for the local demo; refused when DEBUG is off


STAFF = [
    ("agent@demo.quanyi.cn", "隐私专员 Agent", AGENT, False),
    ("dpo@demo.quanyi.cn", "数据保护官 DPO", DPO, False),
    ("auditor@demo.quanyi.cn", "审计员 Auditor", AUDITOR, False),
    ("admin@demo.quanyi.cn", "Administrator", None, True),
]


# The demo subjects as the health app knows them (its own copy, in the product database).
DEMO_PATIENTS = [
    sample_product.Person(
        email="subject@demo.quanyi.cn",
        phone="13800138000",
        name="张三",
        id_number="110101199003071234",
        birthday="1990-03-07",
        gender="男",
        native_place="北京市东城区",
    ),
    sample_product.Person(
        email="patient@demo.quanyi.cn",
        phone="13900139000",
        name="李四",
        id_number="420102198507153456",
        birthday="1985-07-15",
        gender="女",
        native_place="湖北省武汉市",
    ),
]


class Command(BaseCommand):
    help = "Load demo people (idempotent): a subject with an account, a patient without one, and staff."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--password", default=DEMO_PASSWORD, help="password for new demo logins")
        parser.add_argument(
            "--allow-production",
            action="store_true",
            help="seed even though DEBUG is off (never in real use)",
        )

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["allow_production"]:
            raise CommandError("seed_demo creates logins with a known password; it runs only with DEBUG on.")
        password = options["password"]
        logins: list[tuple[str, str]] = []

        user = self._user("subject@demo.quanyi.cn", "张三 Zhang San", password)
        account_holder = DataSubject.objects.filter(user=user).first()
        if account_holder is None:
            account_holder = subject_create(
                actor=SYSTEM,
                user=user,
                email=user.email,
                full_name="张三",
                phone="13800138000",
                id_number="110101199003071234",
                birth_date="1990-03-07",
            )
        logins.append((user.email, "data subject with an account: the portal at /"))

        patient = subject_find(email="patient@demo.quanyi.cn")
        if patient is None:
            patient = subject_create(
                actor=SYSTEM,
                kind=DataSubject.Kind.PATIENT,
                email="patient@demo.quanyi.cn",
                full_name="李四",
                phone="13900139000",
                id_number="420102198507153456",
                birth_date="1985-07-15",
            )
        logins.append(("patient@demo.quanyi.cn", "patient without an account (no login; use public forms)"))

        for email, name, role, superuser in STAFF:
            staff = self._user(email, name, password, staff=True, superuser=superuser)
            if role:
                staff.groups.add(Group.objects.get(name=role))
            logins.append((email, f"staff: {role or 'superuser'} in /admin/"))

        product_rows = sample_product.demo_load(DEMO_PATIENTS)
        self.stdout.write(f"Sample product database: {product_rows} new rows for the demo subjects.")

        consent = load_demo()
        self.stdout.write(
            f"Consent demo: {consent['policies']} policy versions, {consent['purposes']} purposes, "
            f"{consent['events']} new consent events for subject@demo.quanyi.cn."
        )

        register = recipients_demo_load(account_holder=account_holder, patient=patient)
        self.stdout.write(
            f"Disclosure register: {register['recipients']} new recipients, "
            f"{register['disclosures']} new disclosures."
        )
        purposes_link_recipients()

        self.stdout.write(self.style.SUCCESS(f"Demo data ready. Logins (password for new ones: {password}):"))
        for email, what in logins:
            self.stdout.write(f"  {email:<28} {what}")

    def _user(
        self, email: str, name: str, password: str, *, staff: bool = False, superuser: bool = False
    ) -> User:
        user = User.objects.filter(email=email).first()
        if user is None:
            user = User.objects.create_user(
                email=email, password=password, display_name=name, is_staff=staff, is_superuser=superuser
            )
        EmailAddress.objects.update_or_create(
            user=user, email=email, defaults={"verified": True, "primary": True}
        )
        return user
