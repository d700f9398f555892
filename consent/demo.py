"""Demo consent data (idempotent): the dental-software company's privacy policy from seed 000
as version 1, a revised version 2 that adds research with de-identified data, the purposes of
both seed policies, and a short consent history for the demo subject.

Running it again changes nothing that is already there: policies and purposes are matched by
their version and code, and the demo subject's ledger is written only while it is empty (the
ledger is append-only, so replaying a grant-then-withdraw would add events every time).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import DataSubject
from consent.models import ChangeKind, ConsentEvent, LegalBasis, PolicyVersion, Purpose
from consent.services import consent_record
from core.audit import Actor
from core.datamap import Category

DATA = Path(__file__).resolve().parent / "demo"
DEMO_SUBJECT_EMAIL = "subject@demo.quanyi.cn"
V1_EFFECTIVE = date(2024, 7, 10)
V2_PUBLISHED_DAYS_AGO = 5
V2_EFFECTIVE_DAYS_AGO = 3


def _text(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8").strip()


def _start_of_day(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=ZoneInfo(settings.QUANYI_BUSINESS_TZ))


# --- Version 2: version 1 with the changed paragraphs -------------------------------------------

V2_RESEARCH_ZH = (
    "(4)去标识化数据的研究使用。经您单独同意,我们会将去标识化处理后的口腔健康信息和产品使用数据用于"
    "口腔医学研究和产品改进。去标识化数据无法单独识别您的身份,研究结果对外发布时不包含可识别您身份的"
    "信息。您可以随时撤回该同意;不同意或撤回同意不影响您使用我们的产品和服务。"
)
V2_RECIPIENT_ZH = (
    "(4)经您同意用于上述研究目的时,我们会将去标识化处理后的数据提供给与我们签订数据处理协议的合作"
    "口腔医学研究机构。我们要求其不得尝试重新识别个人身份,并在研究完成后删除相关数据。"
)
V2_RESEARCH_EN = (
    "(4) Research with de-identified data. With your separate consent, we use de-identified oral "
    "health information and product usage data for dental research and product improvement. "
    "De-identified data cannot identify you on its own, and published research results contain "
    "nothing that identifies you. You may withdraw this consent at any time; refusing or withdrawing "
    "it does not affect your use of our products and services."
)
V2_RECIPIENT_EN = (
    "(4) When you consent to the research purpose above, we provide de-identified data to partner "
    "dental research institutions that have signed a data processing agreement with us. They must "
    "not try to re-identify anyone and must delete the data when the research is finished."
)

# (paragraph of version 1, "replace" it or insert "after" it, new paragraphs)
V2_EDITS_ZH = [
    ("最近更新日期:2024年7月10日", "replace", ["最近更新日期:{day_zh}"]),
    ("· 遵从和执行适用的法律要求,相关的行业标准或我们的政策。", "after", [V2_RESEARCH_ZH]),
    (
        "(3)对我们与之共享个人信息的公司、组织和个人,我们会要求他们按照我们的说明、本隐私政策以及其他"
        "任何相关的保密和安全措施来处理个人信息。",
        "after",
        [V2_RECIPIENT_ZH],
    ),
]
V2_EDITS_EN = [
    ("Last updated: 10 July 2024", "replace", ["Last updated: {day_en}"]),
    (
        "· Complying with and enforcing applicable legal requirements, industry standards or our policies.",
        "after",
        [V2_RESEARCH_EN],
    ),
    (
        "(3) Companies, organisations and individuals we share personal information with must process it "
        "according to our instructions, this privacy policy and any other relevant confidentiality and "
        "security measures.",
        "after",
        [V2_RECIPIENT_EN],
    ),
]
V2_SUMMARY_ZH = (
    "新增处理目的:经您单独同意,将去标识化处理后的口腔健康信息和使用数据用于口腔医学研究和产品改进"
    "(第1.2条第(4)项);新增接收方:签订数据处理协议的合作口腔医学研究机构(第2.1条第(4)项)。"
    "不同意该目的不影响您使用我们的服务。"
)
V2_SUMMARY_EN = (
    "New purpose: with your separate consent, de-identified oral health information and usage data "
    "are used for dental research and product improvement (section 1.2 (4)); new recipient: partner "
    "dental research institutions under a data processing agreement (section 2.1 (4)). Refusing this "
    "purpose does not affect your use of our services."
)


def revise(text: str, edits: list[tuple[str, str, list[str]]], **values: str) -> str:
    """Apply paragraph edits to a policy text. Every edited paragraph must exist exactly once,
    so a change to the version-1 file cannot silently drop an edit."""
    paragraphs = text.split("\n\n")
    for anchor, mode, new in edits:
        if paragraphs.count(anchor) != 1:
            raise ValueError(f"policy paragraph not found exactly once: {anchor[:40]}…")
        at = paragraphs.index(anchor)
        added = [p.format(**values) for p in new]
        paragraphs[at : at + 1] = added if mode == "replace" else [anchor, *added]
    return "\n\n".join(paragraphs)


# --- Purposes (from the two seed policies) ------------------------------------------------------


@dataclass(frozen=True)
class DemoPurpose:
    code: str
    name_zh: str
    name_en: str
    description_zh: str
    description_en: str
    legal_basis: str
    categories: list[str]
    required: bool = False
    sensitive: bool = False
    marketing: bool = False
    recipients: tuple[str, ...] = ()
    retention: str = ""

    def fields(self, order: int) -> dict[str, Any]:
        return {
            "name_zh": self.name_zh,
            "name_en": self.name_en,
            "description_zh": self.description_zh,
            "description_en": self.description_en,
            "legal_basis": self.legal_basis,
            "categories": list(self.categories),
            "required": self.required,
            "sensitive": self.sensitive,
            "marketing": self.marketing,
            "recipients": list(self.recipients),
            "retention": self.retention,
            "active": True,
            "order": order,
        }


PURPOSES = [
    DemoPurpose(
        code="account_service",
        name_zh="账户与服务提供",
        name_en="Account and service delivery",
        description_zh="创建和管理您的账户、身份认证和权限管理,向您发送重要通知,回应您的咨询和技术支持请求。",
        description_en=(
            "Creating and managing your account, authenticating you and managing permissions, sending "
            "important notices, and answering your enquiries and support requests."
        ),
        legal_basis=LegalBasis.CONTRACT,
        required=True,
        categories=[Category.ACCOUNT, Category.CONTACT, Category.INTERACTION],
        retention="账户存续期间;注销后删除或匿名化 / while the account exists; deleted or anonymised after",
    ),
    DemoPurpose(
        code="order_delivery",
        name_zh="订单配送",
        name_en="Order delivery",
        description_zh="处理您的订单,并把商品配送到您指定的地址。",
        description_en="Processing your orders and delivering them to the address you give.",
        legal_basis=LegalBasis.CONTRACT,
        required=True,
        categories=[Category.ORDERS, Category.CONTACT, Category.PAYMENT],
        recipients=("物流服务商 / delivery companies",),
        retention="交易完成后3年 / 3 years after the transaction",
    ),
    DemoPurpose(
        code="doctor_view_health",
        name_zh="医生查看健康信息",
        name_en="Doctors viewing your health information",
        description_zh="您使用与医生有关的服务时,相关医生将会看到您上传的健康信息。",
        description_en=(
            "When you use services involving a doctor, that doctor sees the health information you upload."
        ),
        legal_basis=LegalBasis.CONSENT,
        sensitive=True,
        categories=[Category.HEALTH],
        recipients=("您选择的医生 / the doctors you consult",),
        retention="撤回同意前 / until you withdraw",
    ),
    DemoPurpose(
        code="troubleshooting",
        name_zh="发送错误详情以排查问题",
        name_en="Sending error details for troubleshooting",
        description_zh="在您选择向我们发送错误详情的情况下,我们用其排查错误。",
        description_en="When you choose to send us error details, we use them to find and fix the error.",
        legal_basis=LegalBasis.CONSENT,
        categories=[Category.DEVICE, Category.INTERACTION],
        retention="问题解决后90天 / 90 days after the problem is solved",
    ),
    DemoPurpose(
        code="research_deidentified",
        name_zh="去标识化数据用于研究",
        name_en="Research with de-identified data",
        description_zh="将去标识化处理后的口腔健康信息和使用数据用于口腔医学研究和产品改进(隐私政策第2版新增)。",
        description_en=(
            "Using de-identified oral health information and usage data for dental research and product "
            "improvement (new in version 2 of the privacy policy)."
        ),
        legal_basis=LegalBasis.CONSENT,
        categories=[Category.HEALTH, Category.USAGE],
        recipients=(
            "合作口腔医学研究机构(仅去标识化数据) / partner research institutions (de-identified data only)",
        ),
        retention="研究结束后删除 / deleted when the research ends",
    ),
    DemoPurpose(
        code="marketing_push",
        name_zh="营销推送消息",
        name_en="Marketing push messages",
        description_zh="向您推送产品和服务的营销信息。您可随时退订,例如根据短信退订指引回复。",
        description_en=(
            "Sending you marketing messages about products and services. You can unsubscribe at any "
            "time, for example by following the SMS unsubscribe instructions."
        ),
        legal_basis=LegalBasis.CONSENT,
        marketing=True,
        categories=[Category.CONTACT, Category.DEVICE_IDENTIFIERS],
        recipients=("短信和推送服务商 / SMS and push notification providers",),
        retention="撤回同意前 / until you withdraw",
    ),
]


# --- Loading ------------------------------------------------------------------------------------


def _load_policies(today: date) -> tuple[PolicyVersion, PolicyVersion]:
    v1_at = _start_of_day(V1_EFFECTIVE)
    zh_v1, en_v1 = _text("policy_v1.zh.txt"), _text("policy_v1.en.txt")
    v1, _ = PolicyVersion.objects.update_or_create(
        version=1,
        defaults={
            "title_zh": "隐私政策",
            "title_en": "Privacy policy",
            "body_zh": zh_v1,
            "body_en": en_v1,
            "material": False,
            "change_kind": "",
        },
        create_defaults={
            "title_zh": "隐私政策",
            "title_en": "Privacy policy",
            "body_zh": zh_v1,
            "body_en": en_v1,
            "effective_at": v1_at,
            "published_at": v1_at,
        },
    )
    # Version 2's dates are set once, when it is first loaded; its text names that date.
    existing = PolicyVersion.objects.filter(version=2).only("effective_at").first()
    effective = (
        existing.effective_at if existing else _start_of_day(today - timedelta(days=V2_EFFECTIVE_DAYS_AGO))
    )
    day = timezone.localtime(effective, ZoneInfo(settings.QUANYI_BUSINESS_TZ)).date()
    texts = {
        "title_zh": "隐私政策",
        "title_en": "Privacy policy",
        "body_zh": revise(zh_v1, V2_EDITS_ZH, day_zh=f"{day.year}年{day.month}月{day.day}日"),
        "body_en": revise(en_v1, V2_EDITS_EN, day_en=f"{day.day} {day:%B} {day.year}"),
        "summary_zh": V2_SUMMARY_ZH,
        "summary_en": V2_SUMMARY_EN,
        "material": True,
        "change_kind": ChangeKind.SERVICE_MODEL,
    }
    v2, _ = PolicyVersion.objects.update_or_create(
        version=2,
        defaults=texts,
        create_defaults={
            **texts,
            "effective_at": effective,
            "published_at": _start_of_day(today - timedelta(days=V2_PUBLISHED_DAYS_AGO)),
        },
    )
    return v1, v2


def _load_ledger(subject: DataSubject) -> int:
    if ConsentEvent.objects.filter(subject=subject).exists():
        return 0
    user = subject.user
    actor = Actor.of(user)
    purposes = {p.code: p for p in Purpose.objects.filter(code__in=[d.code for d in PURPOSES])}
    evidence = {"ip": "127.0.0.1", "user_agent": "Quanyi demo seed"}
    steps: list[tuple[str, str, bool]] = [
        # account_service and order_delivery rest on the contract: no consent is asked for.
        ("doctor_view_health", ConsentEvent.Action.GRANT, True),
        ("marketing_push", ConsentEvent.Action.GRANT, False),
        ("marketing_push", ConsentEvent.Action.WITHDRAW, False),
    ]
    for code, action, separate in steps:
        consent_record(
            subject=subject,
            purpose=purposes[code],
            action=action,
            channel=ConsentEvent.Channel.WEB,
            actor=actor,
            user=user,
            separate=separate,
            **evidence,
        )
    return len(steps)


@transaction.atomic
def load_demo(*, today: date | None = None) -> dict[str, int]:
    """Load (or refresh) the demo policies and purposes, and give the demo subject, if there
    is one, a short consent history. Returns what it wrote."""
    today = today or timezone.localdate(timezone=ZoneInfo(settings.QUANYI_BUSINESS_TZ))
    _load_policies(today)
    for order, purpose in enumerate(PURPOSES, start=1):
        Purpose.objects.update_or_create(code=purpose.code, defaults=purpose.fields(order * 10))
    subject = DataSubject.objects.filter(user__email=DEMO_SUBJECT_EMAIL).select_related("user").first()
    first = PolicyVersion.objects.filter(version=1).first()
    if subject is not None and first is not None and subject.created_at > first.effective_at:
        # The demo patient has used the service since version 1, so version 2's material-change
        # notice is theirs to answer when they sign in.
        DataSubject.objects.filter(pk=subject.pk).update(created_at=first.effective_at)
        subject.created_at = first.effective_at
    events = _load_ledger(subject) if subject is not None else 0
    return {
        "policies": PolicyVersion.objects.count(),
        "purposes": Purpose.objects.count(),
        "events": events,
    }


# Which entries of the disclosure register each demo purpose shares with (core.demo).
PURPOSE_RECIPIENTS = {
    "order_delivery": ("shunda-logistics", "yinhe-pay"),
    "marketing_push": ("xintong-messaging",),
}


def purposes_link_recipients() -> int:
    """Link demo purposes to the demo register (idempotent); returns links added."""
    from core.models import Recipient

    added = 0
    for code, recipient_codes in PURPOSE_RECIPIENTS.items():
        purpose = Purpose.objects.filter(code=code).first()
        if purpose is None:
            continue
        for recipient in Recipient.objects.filter(code__in=recipient_codes):
            if not purpose.shares_with.filter(pk=recipient.pk).exists():
                purpose.shares_with.add(recipient)
                added += 1
    return added
