"""A sample of the product Quanyi sits beside: the health app of seed 004, in a database of
its own (the `product` alias). Quanyi never migrates it; this module only creates the sample
schema and fills it with demo data, so that access, correction and erasure reach data that
lives somewhere else, as they will in a real deployment. config/sources/health_app.json maps
it.

The schema follows seed 004 §1 and seed 000 §4.1: identity (name, ID number, birthday,
gender, native place, phone), devices and their identifiers, locations, health records
(diagnoses, allergies, height, weight, histories, notes), lab and imaging reports, orders
with delivery and payment, and communications.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connections, transaction

ALIAS = "product"

# (table, column definitions); `{pk}` and `{ts}` are filled per database vendor.
_TABLES: list[tuple[str, str]] = [
    (
        "patients",
        """id {pk},
        email VARCHAR(254),
        phone VARCHAR(32),
        name VARCHAR(100),
        id_number VARCHAR(64),
        birthday DATE,
        gender VARCHAR(8),
        native_place VARCHAR(100),
        created_at {ts} NOT NULL,
        restricted_at {ts}""",
    ),
    (
        "devices",
        """id {pk},
        patient_id BIGINT NOT NULL REFERENCES patients(id),
        model VARCHAR(100),
        os_version VARCHAR(50),
        mac VARCHAR(32),
        imei VARCHAR(32),
        android_id VARCHAR(64),
        idfa VARCHAR(64),
        first_seen {ts} NOT NULL""",
    ),
    (
        "locations",
        """id {pk},
        patient_id BIGINT NOT NULL REFERENCES patients(id),
        latitude DOUBLE PRECISION,
        longitude DOUBLE PRECISION,
        city VARCHAR(50),
        recorded_at {ts} NOT NULL""",
    ),
    (
        "health_records",
        """id {pk},
        patient_id BIGINT NOT NULL REFERENCES patients(id),
        diagnosis TEXT,
        drug_allergies TEXT,
        height_cm REAL,
        weight_kg REAL,
        past_history TEXT,
        personal_history TEXT,
        marital_history TEXT,
        family_history TEXT,
        notes TEXT,
        recorded_at {ts} NOT NULL,
        restricted_at {ts}""",
    ),
    (
        "reports",
        """id {pk},
        patient_id BIGINT NOT NULL REFERENCES patients(id),
        kind VARCHAR(16) NOT NULL,
        title VARCHAR(200),
        findings TEXT,
        reported_at {ts} NOT NULL,
        restricted_at {ts}""",
    ),
    (
        "orders",
        """id {pk},
        patient_id BIGINT NOT NULL REFERENCES patients(id),
        order_no VARCHAR(32) NOT NULL,
        item VARCHAR(200),
        amount_cents INTEGER NOT NULL,
        recipient_name VARCHAR(100),
        address VARCHAR(300),
        postal_code VARCHAR(10),
        phone VARCHAR(32),
        payment_status VARCHAR(16),
        logistics_company VARCHAR(100),
        tracking_number VARCHAR(64),
        created_at {ts} NOT NULL,
        restricted_at {ts}""",
    ),
    (
        "messages",
        """id {pk},
        patient_id BIGINT NOT NULL REFERENCES patients(id),
        channel VARCHAR(16) NOT NULL,
        direction VARCHAR(8) NOT NULL,
        body TEXT,
        sent_at {ts} NOT NULL""",
    ),
]
TABLES = [name for name, _ in _TABLES]
# Lookups by the subject's identifiers and by patient: what every real product would index.
_INDEXES = [
    ("patients_email", "patients", "email"),
    ("patients_phone", "patients", "phone"),
    ("patients_id_number", "patients", "id_number"),
    *[(f"{t}_patient", t, "patient_id, id") for t in TABLES if t != "patients"],
]
# The column that dates each table's rows (the data map's "timestamp"): retention sweeps walk
# a table from its oldest rows through an index on (timestamp, id).
AGE_COLUMNS = {
    "patients": "created_at",
    "devices": "first_seen",
    "locations": "recorded_at",
    "health_records": "recorded_at",
    "reports": "reported_at",
    "orders": "created_at",
    "messages": "sent_at",
}
_INDEXES += [(f"{t}_age", t, f"{column}, id") for t, column in AGE_COLUMNS.items()]


def _ddl(vendor: str) -> list[str]:
    pk = "BIGSERIAL PRIMARY KEY" if vendor == "postgresql" else "INTEGER PRIMARY KEY AUTOINCREMENT"
    ts = "TIMESTAMP WITH TIME ZONE" if vendor == "postgresql" else "TIMESTAMP"
    out = [f"CREATE TABLE IF NOT EXISTS {name} ({cols.format(pk=pk, ts=ts)})" for name, cols in _TABLES]
    out += [f"CREATE INDEX IF NOT EXISTS {ix} ON {t} ({cols})" for ix, t, cols in _INDEXES]
    return out


def install(*, using: str = ALIAS, reset: bool = False) -> None:
    """Create the sample schema (idempotent); `reset` drops it first."""
    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        if reset:
            for name in reversed(TABLES):
                cursor.execute(f"DROP TABLE IF EXISTS {name}")
        for statement in _ddl(connection.vendor):
            cursor.execute(statement)


def truncate(*, using: str = ALIAS, fast: bool = False) -> None:
    """Empty the sample tables. `fast` uses TRUNCATE on PostgreSQL, whose exclusive lock
    would block other connections (a subprocess reading the schema) until commit."""
    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        if fast and connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")
        else:
            for name in reversed(TABLES):
                cursor.execute(f"DELETE FROM {name}")  # noqa: S608 - a fixed sample table name


# --- Demo data --------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    email: str
    phone: str
    name: str
    id_number: str
    birthday: str  # ISO date
    gender: str
    native_place: str


def insert_rows(
    table: str, columns: Iterable[str], rows: Sequence[tuple[Any, ...]], *, using: str = ALIAS
) -> None:
    if not rows:
        return
    cols = list(columns)
    placeholders = ", ".join(["%s"] * len(cols))
    with connections[using].cursor() as cursor:
        cursor.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({placeholders})", rows)  # noqa: S608 - fixed sample schema; values are parameters


def patient_insert(person: Person, *, created_at: datetime, using: str = ALIAS) -> int:
    with connections[using].cursor() as cursor:
        cursor.execute(
            "INSERT INTO patients (email, phone, name, id_number, birthday, gender, native_place, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            [
                person.email,
                person.phone,
                person.name,
                person.id_number,
                person.birthday,
                person.gender,
                person.native_place,
                created_at,
            ],
        )
        return int(cursor.fetchone()[0])


_CITIES = [("上海", 31.23, 121.47), ("杭州", 30.27, 120.15), ("北京", 39.90, 116.40), ("成都", 30.57, 104.07)]
_DEVICES = [("HUAWEI Mate 60", "HarmonyOS 4.2"), ("Xiaomi 14", "Android 14"), ("iPhone 15", "iOS 18.1")]
_DIAGNOSES = ["慢性牙周炎", "龋齿（左下第一磨牙）", "过敏性鼻炎", "2型糖尿病（饮食控制）", "高血压1级"]
_ALLERGIES = ["青霉素", "磺胺类", "无已知药物过敏", "阿司匹林"]
_REPORTS = [
    ("lab", "血常规", "白细胞 6.2×10^9/L，血红蛋白 138 g/L，均在参考范围内。"),
    ("lab", "空腹血糖", "6.8 mmol/L，略高于参考范围，建议复查糖化血红蛋白。"),
    ("imaging", "全景牙片", "左下第一磨牙远中邻面龋坏近髓，余牙未见明显异常。"),
    ("imaging", "胸部X线", "双肺纹理清晰，心影不大，未见明显异常。"),
]
_ITEMS = [("电动牙刷（替换刷头 4 支装）", 12900), ("家用电子血压计", 26900), ("漱口水 500ml", 3990)]
_MESSAGES = [
    ("app", "in", "医生您好，补牙之后冷热刺激有点酸，正常吗？"),
    ("app", "out", "您好，补牙后一两周内轻度敏感属正常，如持续疼痛请及时复诊。"),
    ("sms", "out", "【健康App】您预约的口腔检查将于明天上午 9:30 开始，请准时到诊。"),
    ("support", "in", "我的订单一直没有物流信息，麻烦帮忙查一下。"),
]


def person_fill(
    patient_id: int, person: Person, *, now: datetime, rng: random.Random, using: str = ALIAS
) -> int:
    """Realistic rows for one demo patient in every table; returns how many rows it wrote."""
    city, lat, lng = rng.choice(_CITIES)
    model, os_version = rng.choice(_DEVICES)
    mac = ":".join(f"{rng.randrange(256):02X}" for _ in range(6))
    devices = [
        (
            patient_id,
            model,
            os_version,
            mac,
            "".join(str(rng.randrange(10)) for _ in range(15)),
            f"{rng.getrandbits(64):016x}",
            None if "iPhone" not in model else f"{rng.getrandbits(128):032X}",
            now - timedelta(days=400),
        )
    ]
    locations = [
        (
            patient_id,
            lat + rng.uniform(-0.05, 0.05),
            lng + rng.uniform(-0.05, 0.05),
            city,
            now - timedelta(days=d),
        )
        for d in (3, 40, 95)
    ]
    records = [
        (
            patient_id,
            rng.choice(_DIAGNOSES),
            rng.choice(_ALLERGIES),
            round(rng.uniform(155, 185), 1),
            round(rng.uniform(48, 85), 1),
            "既往体健，2019年行阑尾切除术。",
            "不吸烟，偶尔饮酒。",
            "已婚，育有一女。",
            "父亲有高血压病史。",
            "建议三个月后复诊，注意口腔卫生。",
            now - timedelta(days=d),
        )
        for d in (30, 200)
    ]
    reports = [
        (patient_id, kind, title, text, now - timedelta(days=25)) for kind, title, text in _REPORTS[:3]
    ]
    orders = [
        (
            patient_id,
            f"HA{now:%Y%m}{patient_id:04d}{n}",
            item,
            cents,
            person.name,
            f"{city}市某区健康路 {rng.randrange(1, 300)} 号 {rng.randrange(1, 30)} 栋"
            f" {rng.randrange(101, 2801)} 室",
            f"{rng.randrange(100000, 999999)}",
            person.phone,
            "paid",
            "顺达物流有限公司",
            f"SD{rng.randrange(10**11, 10**12)}",
            now - timedelta(days=10 + 30 * n),
        )
        for n, (item, cents) in enumerate(_ITEMS[:2])
    ]
    messages = [
        (patient_id, ch, direction, body, now - timedelta(days=5 - i))
        for i, (ch, direction, body) in enumerate(_MESSAGES)
    ]
    insert_rows(
        "devices",
        ["patient_id", "model", "os_version", "mac", "imei", "android_id", "idfa", "first_seen"],
        devices,
        using=using,
    )
    insert_rows(
        "locations", ["patient_id", "latitude", "longitude", "city", "recorded_at"], locations, using=using
    )
    insert_rows(
        "health_records",
        [
            "patient_id",
            "diagnosis",
            "drug_allergies",
            "height_cm",
            "weight_kg",
            "past_history",
            "personal_history",
            "marital_history",
            "family_history",
            "notes",
            "recorded_at",
        ],
        records,
        using=using,
    )
    insert_rows("reports", ["patient_id", "kind", "title", "findings", "reported_at"], reports, using=using)
    insert_rows(
        "orders",
        [
            "patient_id",
            "order_no",
            "item",
            "amount_cents",
            "recipient_name",
            "address",
            "postal_code",
            "phone",
            "payment_status",
            "logistics_company",
            "tracking_number",
            "created_at",
        ],
        orders,
        using=using,
    )
    insert_rows("messages", ["patient_id", "channel", "direction", "body", "sent_at"], messages, using=using)
    return 1 + len(devices) + len(locations) + len(records) + len(reports) + len(orders) + len(messages)


def demo_load(people: Iterable[Person], *, using: str = ALIAS, seed: int = 2026) -> int:
    """Install the schema and give each person a full history (idempotent per e-mail)."""
    install(using=using)
    rng = random.Random(seed)  # noqa: S311 - demo data, not security
    now = datetime.now(tz=UTC).replace(microsecond=0)
    written = 0
    with transaction.atomic(using=using):
        for person in people:
            with connections[using].cursor() as cursor:
                cursor.execute("SELECT id FROM patients WHERE email = %s", [person.email])
                if cursor.fetchone():
                    continue
            patient_id = patient_insert(person, created_at=now - timedelta(days=420), using=using)
            written += person_fill(patient_id, person, now=now, rng=rng, using=using)
    return written
