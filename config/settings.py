"""Quanyi settings: one module, every knob from the environment (see .env.example).

Development defaults are local and safe. With DEBUG off a missing secret or a malformed
URL stops start-up with ImproperlyConfigured naming the variable; nothing falls back to an
insecure value in production.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

VAR_DIR = Path(env.str("QUANYI_VAR_DIR", default=str(BASE_DIR / "var")))


def _require(name: str, dev_default: str) -> str:
    """A secret: required in production, a fixed local value in development."""
    value = env.str(name, default="")
    if value:
        return value
    if DEBUG:
        return dev_default
    raise ImproperlyConfigured(f"{name} must be set when DEBUG is off (see .env.example).")


def _db(name: str, default: str) -> dict[str, Any]:
    raw = env.str(name, default=default)
    try:
        config: dict[str, Any] = environ.Env.db_url_config(raw)
    except Exception as exc:  # django-environ raises several kinds on bad input
        raise ImproperlyConfigured(f"{name} is malformed: {exc}") from exc
    engine = config.get("ENGINE", "")
    if engine not in {"django.db.backends.sqlite3", "django.db.backends.postgresql"}:
        raise ImproperlyConfigured(
            f"{name} must be a sqlite:/// or postgres:// URL, got scheme of {raw.split(':', 1)[0]!r}."
        )
    if not config.get("NAME"):
        raise ImproperlyConfigured(f"{name} names no database.")
    if engine == "django.db.backends.sqlite3":
        Path(config["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        # IMMEDIATE makes every transaction take the write lock at BEGIN, so two writers
        # queue instead of failing half-way (the audit chain depends on this on SQLite).
        config["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        # A file, not :memory:, so a Celery worker started by a test shares the test database.
        stem = Path(config["NAME"]).stem
        config["TEST"] = {"NAME": str(Path(config["NAME"]).with_name(f"test_{stem}.sqlite3"))}
    else:
        config.setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
        config["CONN_HEALTH_CHECKS"] = True
    config["ATOMIC_REQUESTS"] = False
    return config


# The consent check's hot-path statements are prepared once per PostgreSQL connection (core.db).
# Off behind a transaction pooler that cannot keep prepared statements (PgBouncer < 1.21).
QUANYI_DB_PREPARED_STATEMENTS = env.bool("QUANYI_DB_PREPARED_STATEMENTS", default=True)

# --- Core ------------------------------------------------------------------------------
DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = _require("SECRET_KEY", "dev-only-insecure-key-not-for-production-use-0123456789abcdef")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("QUANYI_SITE_URL", default="http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.headless",
    "core",
    "accounts",
    "consent",
    "dsar",
    "retention",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "core.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before anything that touches a database: while a restore runs (the maintenance flag is
    # set) every request but /healthz gets a 503 page. Static files stay served (no database).
    "core.middleware.MaintenanceMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "consent.context_processors.policy_notice",
                "dsar.context_processors.account_cancellation",
                "retention.context_processors.service_termination",
            ],
        },
    },
]

# --- Databases -------------------------------------------------------------------------
# The subject keys live in a database of their own (the key store) so that they never travel
# in the same backups as the data they protect: destroying a key then makes every older
# backup of the main database unreadable for that subject.
DATABASES = {
    "default": _db("DATABASE_URL", f"sqlite:///{VAR_DIR / 'quanyi.sqlite3'}"),
    "keystore": _db("KEYSTORE_DATABASE_URL", f"sqlite:///{VAR_DIR / 'keystore.sqlite3'}"),
    # The product's own database (the health app), which Quanyi reads and erases through the
    # data-map files in QUANYI_SOURCES_DIR, with parameterised SQL only. Never migrated here.
    "product": _db("PRODUCT_DATABASE_URL", f"sqlite:///{VAR_DIR / 'product.sqlite3'}"),
}
# More product databases, each a data-map file's "database": QUANYI_SOURCE_DATABASES=crm,billing
# reads CRM_DATABASE_URL and BILLING_DATABASE_URL. A new source is configuration, not code.
for _alias in [a.strip() for a in env.list("QUANYI_SOURCE_DATABASES", default=[]) if a.strip()]:
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,30}", _alias) or _alias in DATABASES:
        raise ImproperlyConfigured(
            f"QUANYI_SOURCE_DATABASES: {_alias!r} must be a new lower-case name (letters, digits, _)."
        )
    DATABASES[_alias] = _db(f"{_alias.upper()}_DATABASE_URL", f"sqlite:///{VAR_DIR / (_alias + '.sqlite3')}")
# Data-map files (JSON): one per source of personal data outside Quanyi's own models.
QUANYI_SOURCES_DIR = Path(env.str("QUANYI_SOURCES_DIR", default=str(BASE_DIR / "config" / "sources")))
DATABASE_ROUTERS = ["core.routers.KeystoreRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (shared by every process: allauth's rate limits must hold across workers) ----
try:
    CACHES = {"default": env.cache_url("CACHE_URL", default="dbcache://quanyi_cache")}
except Exception as exc:
    raise ImproperlyConfigured(f"CACHE_URL is malformed: {exc}") from exc
CACHES["default"].setdefault("KEY_PREFIX", env.str("CACHE_KEY_PREFIX", default="quanyi"))

# --- Auth ------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "portal:home"

ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
ACCOUNT_SIGNUP_FORM_CLASS = "accounts.forms.SignupExtraForm"
QUANYI_SIGNUP_OPEN = env.bool("QUANYI_SIGNUP_OPEN", default=True)
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_REAUTHENTICATION_TIMEOUT = env.int("QUANYI_REAUTH_SECONDS", default=300)
ACCOUNT_RATE_LIMITS = {
    # allauth's defaults, stated here so they are visible and tunable.
    "login": "30/m/ip",
    "login_failed": env.str("QUANYI_LOGIN_FAILED_RATE", default="10/m/ip,5/5m/key"),
    "signup": "20/m/ip",
    "confirm_email": "1/3m/key",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
    "reauthenticate": "10/m/ip",
}
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Quanyi"
HEADLESS_CLIENTS = ("app", "browser")
HEADLESS_SERVE_SPECIFICATION = False

# --- Internationalisation --------------------------------------------------------------
LANGUAGE_CODE = env.str("LANGUAGE_CODE", default="zh-hans")
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
USE_TZ = True
TIME_ZONE = "UTC"  # stored timestamps are UTC
QUANYI_BUSINESS_TZ = env.str("QUANYI_BUSINESS_TZ", default="Asia/Shanghai")

# --- Static files ----------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
MEDIA_ROOT = VAR_DIR / "media"
# Access packages (encrypted ZIP files). Never inside a folder the web server serves: a system
# check refuses STATIC_ROOT, MEDIA_ROOT and the static folders.
QUANYI_EXPORT_DIR = Path(env.str("QUANYI_EXPORT_DIR", default=str(VAR_DIR / "exports")))
# Days a ready package can be downloaded before the hourly job deletes it.
QUANYI_EXPORT_TTL_DAYS = env.int("QUANYI_EXPORT_TTL_DAYS", default=7)
# Rows read from a product table per batch while building a package (progress is saved after
# each), and how long a worker's claim on a build lasts without progress before another worker
# may take the build over and start the file again.
QUANYI_EXPORT_BATCH = env.int("QUANYI_EXPORT_BATCH", default=2000)
QUANYI_EXPORT_LEASE_SECONDS = env.int("QUANYI_EXPORT_LEASE_SECONDS", default=600)

# --- E-mail ----------------------------------------------------------------------------
try:
    _email = env.email_url("EMAIL_URL", default="consolemail://")
except Exception as exc:
    raise ImproperlyConfigured(f"EMAIL_URL is malformed: {exc}") from exc
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email.get("EMAIL_HOST", "localhost")
EMAIL_PORT = _email.get("EMAIL_PORT", 25)
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
EMAIL_FILE_PATH = _email.get("EMAIL_FILE_PATH") or str(VAR_DIR / "mail")
if env.str("EMAIL_URL", default="").startswith("filemail:///"):
    EMAIL_FILE_PATH = env.str("EMAIL_URL")[len("filemail://") :]  # django-environ drops the leading "/"
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Quanyi <privacy@quanyi.localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Encryption ------------------------------------------------------------------------
# Master keys wrap the per-subject data keys. Comma-separated, base64 of 32 bytes each; the
# first wraps, every one unwraps (rotation: put the new key first, run rotate_master_key).
QUANYI_MASTER_KEYS = [
    k.strip()
    for k in _require("QUANYI_MASTER_KEYS", "ZGV2LW9ubHktbWFzdGVyLWtleS0zMi1ieXRlcy0hISE=").split(",")
    if k.strip()
]
QUANYI_BLIND_INDEX_KEY = _require("QUANYI_BLIND_INDEX_KEY", "dev-only-blind-index-key")
QUANYI_KEY_CACHE_SECONDS = env.int("QUANYI_KEY_CACHE_SECONDS", default=30)
# Ed25519 seed (base64 of 32 bytes) that signs consent receipts; its public key is published.
QUANYI_RECEIPT_SIGNING_KEY = _require(
    "QUANYI_RECEIPT_SIGNING_KEY", "ZGV2LW9ubHktcmVjZWlwdC1rZXktMzItYnl0ZXMhISE="
)
QUANYI_CONTROLLER_NAME = env.str("QUANYI_CONTROLLER_NAME", default="Quanyi demo clinic software Ltd.")
QUANYI_CONTROLLER_CONTACT = env.str("QUANYI_CONTROLLER_CONTACT", default="privacy@quanyi.localhost")
# Recipient webhooks must be https://; plain http:// (a local test receiver) only when allowed.
QUANYI_WEBHOOK_ALLOW_HTTP = env.bool("QUANYI_WEBHOOK_ALLOW_HTTP", default=DEBUG)

# --- REST API --------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "allauth.headless.contrib.rest_framework.authentication.XSessionTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Quanyi API",
    "DESCRIPTION": "Data-subject rights portal: requests, consents and their evidence.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Two "status" fields with different choices (a request's, a package's) each get a name.
    "ENUM_NAME_OVERRIDES": {
        "StatusEnum": "dsar.models.Status",
        "ExportStatusEnum": "dsar.models.ExportStatus",
    },
}

# --- Celery ----------------------------------------------------------------------------
# Publishing (config.celery: every connection for writing) gives up at once when the broker is
# down, and within seconds when it hangs: one connection attempt (kombu would otherwise retry for
# seconds), bounded connects and replies (a hung Redis would otherwise hold a web request
# forever). Work is queued through the outbox (core.outbox), so a failed publish only means a
# later send by the relay. Consumers keep the defaults: a worker waits for a hung broker rather
# than fail an acknowledgement half-way.
QUANYI_BROKER_PUBLISH_OPTIONS: dict[str, Any] = {
    "max_retries": 0,
    "socket_connect_timeout": 3,
    "socket_timeout": 3,
}
QUANYI_NETWORK_BROKER_OPTIONS: dict[str, Any] = {"visibility_timeout": 3600}
# Default broker: kombu's filesystem transport, a real broker that needs no server (see README).
# "localhost" only names the (serverless) transport's host, so kombu does not warn about a missing one.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://localhost/")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = Path(env.str("QUANYI_BROKER_DIR", default=str(VAR_DIR / "broker")))
    for _sub in ("queue", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = dict(QUANYI_NETWORK_BROKER_OPTIONS)
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="quanyi")
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_TIME_LIMIT = 15 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 14 * 60
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_PUBLISH_RETRY = False  # a failed publish leaves the outbox row for the relay
CELERY_TIMEZONE = QUANYI_BUSINESS_TZ
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    # Every minute: the worker proves it is alive (read by /healthz and the staff overview).
    "heartbeat": {"task": "core.tasks.heartbeat", "schedule": 60.0},
    # Every minute: re-send outbox messages that were never published or never finished
    # (a crash right after commit, a broker outage). The database is the source of truth.
    "outbox-relay": {"task": "core.tasks.outbox_relay", "schedule": 60.0},
    # Every 15 minutes: reminders at 5, 2 and 1 working days left and when overdue (each once).
    "dsar-reminders": {"task": "dsar.tasks.reminders_sweep", "schedule": 15 * 60.0},
    # Every minute: erasures confirmed but not running (a lost message, a crashed worker whose
    # lease ran out) are queued again; the lease makes a second run harmless.
    "erasures-resume": {"task": "retention.tasks.erasures_resume", "schedule": 60.0},
    # Every 15 minutes: account cancellations whose cooling-off has ended get their erasure
    # planned and confirmed (each once: the schedule row is claimed with a conditional UPDATE).
    "dsar-cancellations": {"task": "dsar.tasks.cancellations_sweep", "schedule": 15 * 60.0},
    # Every minute: send recipient notices whose (next) attempt is due, and re-queue ones a
    # worker lost. Retries back off 1, 2, 4 ... minutes up to 6 hours, until a 2xx.
    "recipient-notices": {"task": "core.tasks.recipient_notices_sweep", "schedule": 60.0},
    # Hourly: delete access packages whose download window (QUANYI_EXPORT_TTL_DAYS) has passed.
    "dsar-expire-exports": {"task": "dsar.tasks.expire_exports", "schedule": 3600.0},
    # Every minute: notice campaigns (material policy changes, security incidents) whose
    # batches stopped — a lost message, a killed worker whose lease ran out — are queued again.
    # Rows a dead worker may have sent are marked interrupted, never resent automatically.
    "notice-campaigns": {"task": "consent.tasks.campaigns_resume", "schedule": 60.0},
    # Nightly: verify the audit hash chain end to end.
    "verify-audit": {"task": "core.tasks.verify_audit_chain", "schedule": 24 * 3600.0},
    # Nightly at 02:30 (CELERY_TIMEZONE): an encrypted backup of the main and product databases
    # (never the key store), verified by reading it back; then backups older than
    # QUANYI_BACKUP_RETENTION_DAYS are deleted, which is when an erased person leaves the last one.
    "backup-nightly": {"task": "retention.tasks.backup_nightly", "schedule": crontab(hour=2, minute=30)},
    # Daily: apply the retention rules (delete, anonymise or restrict what is past its period,
    # legal holds excepted), list children's data without guardian consent, and tell the DPO
    # group about legal holds past their review date (each hold at most once a day).
    "retention-sweep": {"task": "retention.tasks.retention_sweep", "schedule": 24 * 3600.0},
    # Every minute: the service termination, once started — marks the notices sent and, from the
    # stop date, erases every person in batches (resumable; legal holds kept and listed).
    "service-termination": {"task": "retention.tasks.service_termination", "schedule": 60.0},
}
# /healthz: how long the broker connection check may take, and how old the worker's heartbeat
# (written every minute) may be before the worker counts as stale (status "degraded").
QUANYI_HEALTH_BROKER_TIMEOUT = env.float("QUANYI_HEALTH_BROKER_TIMEOUT", default=1.5)
QUANYI_HEARTBEAT_STALE_SECONDS = env.int("QUANYI_HEARTBEAT_STALE_SECONDS", default=180)
QUANYI_OUTBOX_RESEND_AFTER_SECONDS = env.int("QUANYI_OUTBOX_RESEND_AFTER_SECONDS", default=600)
# `make bench` only: serve a bare JSON view as the baseline of the API throughput benchmarks.
QUANYI_BENCH_ENDPOINTS = env.bool("QUANYI_BENCH_ENDPOINTS", default=False)
# Consent checks per API key per minute (0: the built-in 6000).
QUANYI_CONSENT_CHECK_RATE = env.int("QUANYI_CONSENT_CHECK_RATE", default=0)
# How long a process reuses an API key it has read (0: read it on every call). Revoking a key
# stops it at once in the process that revokes it and within this many seconds everywhere.
QUANYI_API_KEY_CACHE_SECONDS = env.float("QUANYI_API_KEY_CACHE_SECONDS", default=5.0)

# --- Erasure -----------------------------------------------------------------------------
# Rows per batch (one transaction each) and how long a worker's claim on a running erasure
# lasts without progress before another worker may take it over.
QUANYI_ERASURE_BATCH = env.int("QUANYI_ERASURE_BATCH", default=2000)
QUANYI_ERASURE_LEASE_SECONDS = env.int("QUANYI_ERASURE_LEASE_SECONDS", default=120)
# Progress is saved at most this often; a crash repeats the (idempotent) batches since.
QUANYI_ERASURE_CHECKPOINT_SECONDS = env.float("QUANYI_ERASURE_CHECKPOINT_SECONDS", default=0.5)

# --- Backups (retention.backups) ----------------------------------------------------------
# Daily backups are kept this many days (their expires_at); an erased person's data has left
# every backup by the last expiry among the backups taken before the erasure. With no backup
# catalogued yet, erasure reports count this many days from the erasure instead.
QUANYI_BACKUP_RETENTION_DAYS = env.int("QUANYI_BACKUP_RETENTION_DAYS", default=30)
# Encrypts backup files (streaming AES-256-GCM). Comma-separated base64 32-byte keys: the first
# encrypts, every one decrypts, so a new key can go first while older backups stay readable.
# Keep it away from the backups themselves, and apart from the key store's backups.
QUANYI_BACKUP_KEY = [
    k.strip()
    for k in _require("QUANYI_BACKUP_KEY", "ZGV2LW9ubHktYmFja3VwLWtleS0zMi1ieXRlcyEhISE=").split(",")
    if k.strip()
]
QUANYI_BACKUP_DIR = Path(env.str("QUANYI_BACKUP_DIR", default=str(VAR_DIR / "backups")))
# While this file exists the web answers 503 (a restore is replaying erasures). A file, not a
# database row: it must survive the restore that replaces the databases. With several web
# machines it must be on storage they share.
QUANYI_MAINTENANCE_FILE = Path(env.str("QUANYI_MAINTENANCE_FILE", default=str(VAR_DIR / "maintenance")))

# --- Retention sweep ---------------------------------------------------------------------
# Rows per batch (one transaction each), and how long a sweep's claim on one (rule, table)
# lasts without progress before another sweep may take the unit over and resume it.
QUANYI_RETENTION_BATCH = env.int("QUANYI_RETENTION_BATCH", default=5000)
QUANYI_RETENTION_LEASE_SECONDS = env.int("QUANYI_RETENTION_LEASE_SECONDS", default=300)

# --- Account cancellation ----------------------------------------------------------------
# Days between the subject confirming a cancellation and the erasure starting; signing in or
# the undo button undoes it meanwhile. The request is verified at confirmation, so the
# cooling-off counts against the 15 working days: 14 days still leave at least 4 before the
# deadline (tests/test_cancellation.py checks every day of a year) for the erasure, or for
# staff when a legal hold stops it; more would not.
QUANYI_CANCELLATION_COOLING_OFF_DAYS = env.int("QUANYI_CANCELLATION_COOLING_OFF_DAYS", default=7)
if not 0 <= QUANYI_CANCELLATION_COOLING_OFF_DAYS <= 14:
    raise ImproperlyConfigured("QUANYI_CANCELLATION_COOLING_OFF_DAYS must be between 0 and 14 (days).")

# --- Notice campaigns ---------------------------------------------------------------------
# E-mails per batch (one claim, then one commit per e-mail), people chosen per transaction
# when a campaign starts, and how long a batch's claim on its campaign lasts. A batch stops
# taking new e-mails after half the lease, so a live batch never outlives it.
QUANYI_CAMPAIGN_BATCH = env.int("QUANYI_CAMPAIGN_BATCH", default=100)
QUANYI_CAMPAIGN_TARGET_BATCH = env.int("QUANYI_CAMPAIGN_TARGET_BATCH", default=1000)
QUANYI_CAMPAIGN_LEASE_SECONDS = env.int("QUANYI_CAMPAIGN_LEASE_SECONDS", default=300)

# --- Service termination (retention.termination; seed 000 §6) ------------------------------
# The least number of days between starting the termination (announcement and e-mails) and
# the stop date, from which every person is erased; and people erased per batch by the job.
QUANYI_TERMINATION_NOTICE_DAYS = env.int("QUANYI_TERMINATION_NOTICE_DAYS", default=30)
if QUANYI_TERMINATION_NOTICE_DAYS < 1:
    raise ImproperlyConfigured("QUANYI_TERMINATION_NOTICE_DAYS must be at least 1 (day).")
QUANYI_TERMINATION_BATCH = env.int("QUANYI_TERMINATION_BATCH", default=50)

# --- Security --------------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # allauth headless browser clients read it
# Django's default, stated: no cookie rides along on a cross-site POST (tests/test_security.py).
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
if env.bool("QUANYI_BEHIND_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Rate limits count clients by address. Behind proxies every request comes from a proxy, so
    # the client is the X-Forwarded-For entry the last of them appended (entries before it are
    # the client's own word and are ignored); without this one client would lock out everyone.
    ALLAUTH_TRUSTED_PROXY_COUNT = env.int("QUANYI_TRUSTED_PROXY_COUNT", default=1)
QUANYI_CSP = env.str(
    "QUANYI_CSP",
    default=(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
)

# --- Logging ---------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # Never below INFO, whatever LOG_LEVEL says: at DEBUG these log SQL with its parameters and
    # whole template contexts (the person's e-mail, phone and ID number with them).
    "loggers": {"django.db.backends": {"level": "WARNING"}, "django.template": {"level": "INFO"}},
}

# Quanyi's own labels for the UI, marked for translation.
QUANYI_PRODUCT_NAME = _("Quanyi data rights portal")
