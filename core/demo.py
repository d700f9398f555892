"""Demo disclosure register (idempotent): the recipients the two seed policies name (seed 004
§1(4) and §3: a logistics company, a payment institution, a communications service provider
sending e-mail and push on our behalf; seed 000 §2: an affiliated cloud host under an
entrustment agreement, and a public authority the law makes us report to), with disclosures
for the demo subjects. All companies are fictional.

No demo recipient has a webhook, so their notices show up as manual tasks in the admin. To see a
signed delivery, give one a webhook URL and secret in the admin (README, "Recipients and
notices").

Running it again changes nothing: recipients are matched by code (a DPO's edits stay), and a
disclosure is recorded only when the pair has none yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.audit import SYSTEM
from core.datamap import Category as C
from core.models import Disclosure, Recipient, RecipientKind, RecipientLegalBasis
from core.recipients import disclosure_record, recipient_save

if TYPE_CHECKING:
    from accounts.models import DataSubject


@dataclass(frozen=True)
class DemoRecipient:
    code: str
    name: str
    kind: str
    purpose: str
    legal_basis: str
    categories: tuple[str, ...]
    contact_email: str


RECIPIENTS = [
    DemoRecipient(
        "shunda-logistics",
        "顺达物流有限公司",
        RecipientKind.SHARED,
        "配送您订购的商品(如种植体、隐形矫治器),并提供物流查询与售后服务。",
        RecipientLegalBasis.CONTRACT,
        (C.ORDERS, C.CONTACT),
        "privacy@shunda-logistics.example.cn",
    ),
    DemoRecipient(
        "yinhe-pay",
        "银合支付有限公司",
        RecipientKind.SHARED,
        "完成支付结算,确认交易与支付状态,处理退款与争议。",
        RecipientLegalBasis.CONTRACT,
        (C.PAYMENT, C.ORDERS),
        "dpo@yinhe-pay.example.cn",
    ),
    DemoRecipient(
        "xintong-messaging",
        "信通云讯科技有限公司",
        RecipientKind.ENTRUSTED,
        "代表我们发送电子邮件、短信和推送通知(通讯服务提供商)。",
        RecipientLegalBasis.CONTRACT,
        (C.CONTACT, C.COMMUNICATIONS, C.DEVICE_IDENTIFIERS),
        "privacy@xintong-msg.example.cn",
    ),
    DemoRecipient(
        "huayun-cloud",
        "华云数智科技(杭州)有限公司",
        RecipientKind.ENTRUSTED,
        "关联公司,依据委托处理协议为我们托管服务器与数据库,不为自身目的使用数据。",
        RecipientLegalBasis.CONTRACT,
        (C.ACCOUNT, C.CONTACT, C.HEALTH, C.INTERACTION),
        "security@huayun-cloud.example.cn",
    ),
    DemoRecipient(
        "demo-health-commission",
        "示例市卫生健康委员会",
        RecipientKind.SHARED,
        "依照法律法规和主管部门的强制性要求报送诊疗相关信息。",
        RecipientLegalBasis.LEGAL_DUTY,
        (C.HEALTH, C.IDENTITY_DOCUMENTS),
        "",
    ),
]

# (recipient code, categories, the recipient's own reference for the person)
ACCOUNT_HOLDER_DISCLOSURES = [
    ("shunda-logistics", (C.ORDERS, C.CONTACT), "SD-CUST-20240711-0381"),
    ("yinhe-pay", (C.PAYMENT,), "YH-7730021"),
    ("xintong-messaging", (C.CONTACT, C.COMMUNICATIONS), "xt-sub-55812"),
    ("huayun-cloud", (C.ACCOUNT, C.CONTACT, C.INTERACTION), "tenant-qy/user-1001"),
]
PATIENT_DISCLOSURES = [
    ("huayun-cloud", (C.HEALTH,), "tenant-qy/patient-2001"),
    ("demo-health-commission", (C.HEALTH, C.IDENTITY_DOCUMENTS), "示例-2025-0412"),
]


def recipients_demo_load(
    *, account_holder: DataSubject | None = None, patient: DataSubject | None = None
) -> dict[str, int]:
    """Load the demo register; returns how many recipients and disclosures were added."""
    added = {"recipients": 0, "disclosures": 0}
    by_code: dict[str, Recipient] = {}
    for spec in RECIPIENTS:
        recipient = Recipient.objects.filter(code=spec.code).first()
        if recipient is None:
            recipient = recipient_save(
                recipient=Recipient(
                    code=spec.code,
                    name=spec.name,
                    kind=spec.kind,
                    purpose=spec.purpose,
                    legal_basis=spec.legal_basis,
                    categories=list(spec.categories),
                    contact_email=spec.contact_email,
                ),
                actor=SYSTEM,
            )
            added["recipients"] += 1
        by_code[spec.code] = recipient
    for subject, disclosures in (
        (account_holder, ACCOUNT_HOLDER_DISCLOSURES),
        (patient, PATIENT_DISCLOSURES),
    ):
        if subject is None:
            continue
        for code, categories, ref in disclosures:
            if Disclosure.objects.filter(recipient=by_code[code], subject=subject).exists():
                continue
            disclosure_record(
                recipient=by_code[code],
                subject=subject,
                categories=categories,
                external_ref=ref,
                actor=SYSTEM,
            )
            added["disclosures"] += 1
    return added
