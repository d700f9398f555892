"""REST API v1 for consents: serializers and views.

Three audiences:

* Signed-in subjects (browser session, or an app's allauth X-Session-Token) read their current
  choices and their ledger, grant or withdraw, and download signed receipts of their own events.
  Staff accounts have no choices of their own here (403); someone else's receipt answers 404.
* Anyone reads the current privacy policy and the public key that verifies receipts.
* The product's service accounts ask, with an API key and nothing else, whether they may
  process a purpose for a subject, now or at a past moment.

Bad input answers 400 with field messages, never 500.
"""

from __future__ import annotations

import functools
import re
import uuid
from datetime import datetime
from typing import Any, Final, cast

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_safe
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from accounts.models import DataSubject, User
from accounts.services import subject_for_user
from consent import apikeys, receipts, services
from consent.apikeys import CONSENT_CHECK
from consent.authentication import KEYWORD, ApiKeyAuthentication, HasScope
from consent.models import ApiKey, ChangeKind, ConsentEvent, ConsentState, PolicyVersion, Purpose
from consent.selectors import consent_check_now
from core.audit import Actor
from core.ratelimit import rate_limited
from dsar.api import NO_PAGE, DetailSerializer  # one shared "Detail" component in the schema

MAX_BULK_CHECKS: Final = 500
# Requests per API key and minute on the consent-check endpoints (a bulk call counts once).
CHECK_LIMIT: int = 6000
CHECK_WINDOW: Final = 60
_REFERENCE = re.compile(r"DS-([0-9]{1,19})")
_MAX_PK: Final = 2**63 - 1

# Machine-readable reasons of the consent check (stable strings, deliberately not translated).
UNKNOWN_SUBJECT: Final = "unknown subject"
UNKNOWN_PURPOSE: Final = "unknown purpose"

# --- Fields ------------------------------------------------------------------------------------


class StrictBooleanField(serializers.BooleanField):
    """Only JSON true or false: a separate consent must be explicit, not "yes" or 1."""

    default_error_messages = {"invalid": gettext_lazy("Must be true or false.")}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class AwareDateTimeField(serializers.DateTimeField):
    """ISO-8601 with a UTC offset: a moment of evidence must not depend on a server's zone."""

    default_error_messages = {
        "naive": gettext_lazy("Give the time with its UTC offset, e.g. 2026-03-02T10:00:00+08:00.")
    }

    def enforce_timezone(self, value: datetime) -> datetime:
        if timezone.is_naive(value):
            self.fail("naive")
        return super().enforce_timezone(value)


# --- Serializers -------------------------------------------------------------------------------


class ConsentChoiceSerializer(serializers.Serializer):
    """One active purpose and the subject's current answer to it."""

    purpose = serializers.CharField(help_text="The purpose's code.")
    name_zh = serializers.CharField()
    name_en = serializers.CharField()
    description_zh = serializers.CharField()
    description_en = serializers.CharField()
    legal_basis = serializers.CharField()
    legal_basis_label = serializers.CharField()
    needs_consent = serializers.BooleanField(help_text="False when another legal basis applies.")
    # DRF pops declared fields off the class; the stubs only see Field.required (a bool).
    required = serializers.BooleanField()  # type: ignore[assignment]
    sensitive = serializers.BooleanField(help_text="Granting needs `separate: true`.")
    marketing = serializers.BooleanField()
    granted = serializers.BooleanField()
    separate = serializers.BooleanField()
    receipt_id = serializers.UUIDField(allow_null=True, help_text="The governing event, if any.")
    since = serializers.DateTimeField(allow_null=True)


class ConsentEventSerializer(serializers.ModelSerializer):
    """One line of the subject's ledger (no staff identities, no evidence IP)."""

    purpose = serializers.CharField(source="purpose.code", read_only=True)
    action_label = serializers.CharField(source="get_action_display", read_only=True)
    channel_label = serializers.CharField(source="get_channel_display", read_only=True)
    policy_version = serializers.IntegerField(source="policy_version.version", read_only=True)
    grants = serializers.BooleanField(read_only=True)

    class Meta:
        model = ConsentEvent
        fields = [
            "receipt_id",
            "purpose",
            "action",
            "action_label",
            "grants",
            "channel",
            "channel_label",
            "separate",
            "policy_version",
            "occurred_at",
        ]
        read_only_fields = fields


class ConsentRecordSerializer(serializers.Serializer):
    purpose = serializers.CharField(max_length=64, help_text="The purpose's code.")
    action = serializers.ChoiceField(
        choices=[
            (ConsentEvent.Action.GRANT.value, ConsentEvent.Action.GRANT.label),
            (ConsentEvent.Action.WITHDRAW.value, ConsentEvent.Action.WITHDRAW.label),
        ]
    )
    separate = StrictBooleanField(
        default=False, help_text="A separate, explicit consent: required to grant a sensitive purpose."
    )

    def validate_purpose(self, value: str) -> Purpose:
        purpose = Purpose.objects.filter(code=value).first()
        if purpose is None:
            raise serializers.ValidationError(_("There is no purpose with this code."))
        return purpose


class PolicySerializer(serializers.ModelSerializer):
    # Declared: the model field is blank=True, which a read-only model field does not carry
    # into the schema, and a version that is not a material change has "" here.
    change_kind = serializers.ChoiceField(
        choices=ChangeKind.choices,
        allow_blank=True,
        read_only=True,
        help_text="Empty unless the version is a material change.",
    )
    change_kind_label = serializers.CharField(source="get_change_kind_display", read_only=True)

    class Meta:
        model = PolicyVersion
        fields = [
            "version",
            "title_zh",
            "title_en",
            "summary_zh",
            "summary_en",
            "body_zh",
            "body_en",
            "material",
            "change_kind",
            "change_kind_label",
            "effective_at",
            "published_at",
        ]
        read_only_fields = fields


class ReceiptKeySerializer(serializers.Serializer):
    algorithm = serializers.CharField()
    key_id = serializers.CharField(help_text="`signature.kid` of the receipts this key verifies.")
    public_key_pem = serializers.CharField()


class ReceiptSignatureSerializer(serializers.Serializer):
    alg = serializers.CharField()
    kid = serializers.CharField()
    value = serializers.CharField(help_text="Base64 Ed25519 signature of the canonical receipt JSON.")


class SignedReceiptSerializer(serializers.Serializer):
    receipt = serializers.DictField(help_text="ISO/IEC TS 27560-shaped consent receipt.")
    signature = ReceiptSignatureSerializer()


class CheckQuerySerializer(serializers.Serializer):
    subject = serializers.CharField(max_length=32, help_text="The subject's reference, e.g. DS-000123.")
    purpose = serializers.CharField(max_length=64, help_text="The purpose's code.")
    at = AwareDateTimeField(
        required=False, help_text="Answer for this moment instead of now (ISO-8601 with offset)."
    )


class CheckResultSerializer(serializers.Serializer):
    subject = serializers.CharField()
    purpose = serializers.CharField()
    at = serializers.DateTimeField(help_text="The moment the answer is for.")
    allowed = serializers.BooleanField()
    reason = serializers.CharField()
    receipt_id = serializers.UUIDField(allow_null=True, help_text="The governing consent event.")
    event_at = serializers.DateTimeField(allow_null=True)


class CheckNotFoundSerializer(serializers.Serializer):
    detail = serializers.CharField()
    reason = serializers.ChoiceField(choices=[UNKNOWN_SUBJECT, UNKNOWN_PURPOSE])


class BulkCheckSerializer(serializers.Serializer):
    checks = serializers.ListField(child=CheckQuerySerializer(), min_length=1, max_length=MAX_BULK_CHECKS)


class BulkCheckResultSerializer(serializers.Serializer):
    results = CheckResultSerializer(many=True, help_text="In the order of `checks`.")


# --- Helpers -----------------------------------------------------------------------------------


def _service_errors(exc: DjangoValidationError) -> serializers.ValidationError:
    if hasattr(exc, "error_dict"):
        return serializers.ValidationError(exc.message_dict)
    return serializers.ValidationError({"non_field_errors": exc.messages})


class IsSubject(BasePermission):
    """Signed in as a data subject; staff accounts have no consents of their own."""

    message = gettext_lazy("Only data subjects have consents here; staff see the ledger in the admin.")

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        return bool(isinstance(user, User) and user.is_authenticated and not user.is_staff)


def _subject(request: Request) -> DataSubject:
    return subject_for_user(user=cast(User, request.user))


def _choices(subject: DataSubject) -> list[dict[str, Any]]:
    states = {
        s.purpose_id: s
        for s in ConsentState.objects.filter(subject=subject)
        .select_related("event")
        .only("purpose_id", "granted", "separate", "since", "event__receipt_id")
    }
    rows = []
    for purpose in Purpose.objects.filter(active=True):
        state = states.get(purpose.pk)
        rows.append(
            {
                "purpose": purpose.code,
                "name_zh": purpose.name_zh,
                "name_en": purpose.name_en,
                "description_zh": purpose.description_zh,
                "description_en": purpose.description_en,
                "legal_basis": purpose.legal_basis,
                "legal_basis_label": str(purpose.get_legal_basis_display()),
                "needs_consent": purpose.needs_consent,
                "required": purpose.required,
                "sensitive": purpose.sensitive,
                "marketing": purpose.marketing,
                "granted": bool(state and state.granted),
                "separate": bool(state and state.separate),
                "receipt_id": state.event.receipt_id if state else None,
                "since": state.since if state else None,
            }
        )
    return rows


def _subject_pk(reference: str) -> int | None:
    found = _REFERENCE.fullmatch(reference.strip())
    if found is None:
        return None
    pk = int(found.group(1))
    return pk if 0 < pk <= _MAX_PK else None


def _result(
    reference: str, code: str, at: datetime | None, decision: services.Decision | None, reason: str = ""
) -> dict[str, Any]:
    event = decision.event if decision else None
    return {
        "subject": reference,
        "purpose": code,
        "at": at or timezone.now(),
        "allowed": bool(decision and decision.allowed),
        "reason": decision.reason if decision else reason,
        "receipt_id": event.receipt_id if event else None,
        "event_at": event.occurred_at if event else None,
    }


def _within_limit(key: ApiKey) -> bool:
    """Counts one consent-check call against the key's limit per minute."""
    limit = settings.QUANYI_CONSENT_CHECK_RATE or CHECK_LIMIT
    # A product calls this in bulk: spend the limit in batches of 1 % per process.
    batch = max(1, limit // 100)
    return not rate_limited("consent-check", key.prefix, limit=limit, window=CHECK_WINDOW, batch=batch)


class ConsentCheckThrottle(BaseThrottle):
    """Per API key, in the shared cache (so the limit holds across processes)."""

    def allow_request(self, request: Request, view: APIView) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return True
        return _within_limit(key)

    def wait(self) -> float:
        return float(CHECK_WINDOW)


_400 = OpenApiResponse(description="Invalid input: field messages.")
_DENIED = OpenApiResponse(DetailSerializer, description="Not signed in, or a staff account.")
_NO_KEY = OpenApiResponse(DetailSerializer, description="No API key, or an invalid or revoked one.")
_NO_SCOPE = OpenApiResponse(DetailSerializer, description="The key lacks the `consent:check` scope.")
_LIMITED = OpenApiResponse(DetailSerializer, description="Too many requests for this key: try again later.")
_RECEIPT_ID = OpenApiParameter("receipt_id", OpenApiTypes.UUID, OpenApiParameter.PATH)

# --- Subjects ----------------------------------------------------------------------------------


class ConsentListRecord(APIView):
    permission_classes = [IsSubject]
    parser_classes = [JSONParser]

    @extend_schema(
        summary="Your current consent choices",
        description="Every active purpose, with your current answer and the event that governs it.",
        responses={200: ConsentChoiceSerializer(many=True), 403: _DENIED},
    )
    def get(self, request: Request) -> Response:
        rows = _choices(_subject(request))
        return Response(ConsentChoiceSerializer(rows, many=True).data)

    @extend_schema(
        summary="Grant or withdraw consent to a purpose",
        description="A withdrawal takes effect from its own moment; it does not undo processing "
        "that happened while consent was given. A sensitive purpose is granted only with "
        "`separate: true`. Repeating a choice records nothing and answers 200 with the event "
        "that already governs it.",
        request=ConsentRecordSerializer,
        responses={201: ConsentEventSerializer, 200: ConsentEventSerializer, 400: _400, 403: _DENIED},
    )
    def post(self, request: Request) -> Response:
        data = ConsentRecordSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        purpose: Purpose = data.validated_data["purpose"]
        subject = _subject(request)
        user = cast(User, request.user)
        http = request._request
        latest = (
            ConsentEvent.objects.filter(subject=subject, purpose=purpose)
            .order_by("-id")
            .values_list("pk", flat=True)
            .first()
        )
        try:
            event = services.consent_record(
                subject=subject,
                purpose=purpose,
                action=data.validated_data["action"],
                channel=ConsentEvent.Channel.API,
                actor=Actor.of(user),
                user=user,
                separate=data.validated_data["separate"],
                ip=http.META.get("REMOTE_ADDR", ""),
                user_agent=http.META.get("HTTP_USER_AGENT", ""),
            )
        except DjangoValidationError as exc:
            raise _service_errors(exc) from None
        created = event.pk != latest
        return Response(
            ConsentEventSerializer(event).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class ConsentHistory(generics.ListAPIView):
    permission_classes = [IsSubject]
    serializer_class = ConsentEventSerializer

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return ConsentEvent.objects.none()
        return (
            ConsentEvent.objects.filter(subject=_subject(self.request))
            .select_related("purpose", "policy_version")
            .order_by("-occurred_at", "-id")
        )

    @extend_schema(
        summary="Your consent ledger, newest first",
        responses={200: ConsentEventSerializer(many=True), 403: _DENIED, 404: NO_PAGE},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class ConsentReceipt(APIView):
    permission_classes = [IsSubject]

    @extend_schema(
        summary="The signed receipt of one of your consent events",
        description="Verify it with the key at /api/v1/receipt-key/: Ed25519 over the receipt "
        "serialised as JSON with sorted keys, no spaces, UTF-8.",
        parameters=[_RECEIPT_ID],
        responses={200: SignedReceiptSerializer, 403: _DENIED, 404: DetailSerializer},
    )
    def get(self, request: Request, receipt_id: str) -> Response:
        try:
            wanted = uuid.UUID(receipt_id)
        except ValueError:
            raise NotFound() from None
        user = cast(User, request.user)
        # Looked up, not created: asking for a receipt records nothing unless one is issued.
        event = (
            ConsentEvent.objects.filter(receipt_id=wanted, subject__user=user)
            .select_related("subject", "purpose", "policy_version")
            .first()
        )
        if event is None:
            raise NotFound()
        response = Response(services.receipt_issue(event=event, actor=Actor.of(user)))
        response["Content-Disposition"] = f'attachment; filename="consent-receipt-{event.receipt_id}.json"'
        return response


# --- Public ------------------------------------------------------------------------------------


class CurrentPolicy(APIView):
    # Nothing ambient is used, so no session and no CSRF.
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="The privacy policy in force",
        responses={200: PolicySerializer, 404: DetailSerializer},
        auth=[],
    )
    def get(self, request: Request) -> Response:
        policy = services.current_policy()
        if policy is None:
            raise NotFound(_("No privacy policy is published yet."))
        return Response(PolicySerializer(policy).data)


class ReceiptKey(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="The public key that verifies consent receipts",
        description="The same PEM is served as text/plain at /.well-known/quanyi-receipt-key.pem.",
        responses={200: ReceiptKeySerializer},
        auth=[],
    )
    def get(self, request: Request) -> Response:
        return Response(
            {"algorithm": "Ed25519", "key_id": receipts.key_id(), "public_key_pem": receipts.public_key_pem()}
        )


@require_safe
def receipt_key_pem(request: HttpRequest) -> HttpResponse:
    """/.well-known/quanyi-receipt-key.pem: the receipt key where verifiers look for it."""
    response = HttpResponse(receipts.public_key_pem(), content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "public, max-age=3600"
    return response


# --- Service accounts --------------------------------------------------------------------------


class _ConsentCheckBase(APIView):
    # Only an API key: a browser session must never be able to query other people's consents.
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasScope]
    throttle_classes = [ConsentCheckThrottle]
    required_scopes = [CONSENT_CHECK]


class ConsentCheck(_ConsentCheckBase):
    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        """DRF's view behind the common case's short path (`_answered_plainly`). The wrapper
        keeps the view's attributes, so routing, CSRF exemption and the schema see DRF's."""
        view = super().as_view(**initkwargs)

        def consent_check(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            return _answered_plainly(request) or view(request, *args, **kwargs)

        return functools.update_wrapper(consent_check, view)

    @extend_schema(
        summary="May the product process this purpose for this subject?",
        description="Answers for now, or for the moment `at`: a withdrawal is not retroactive, so "
        "a moment before it still answers from the consent given then.",
        parameters=[CheckQuerySerializer],
        responses={
            200: CheckResultSerializer,
            400: _400,
            401: _NO_KEY,
            403: _NO_SCOPE,
            404: CheckNotFoundSerializer,
            429: _LIMITED,
        },
    )
    def get(self, request: Request) -> Response:
        fast = _plain_check(request.query_params)
        if fast is not None:
            return _check_now(*fast)
        query = CheckQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        reference, code = query.validated_data["subject"], query.validated_data["purpose"]
        at = query.validated_data.get("at")
        pk = _subject_pk(reference)
        # The answer needs the subject's id and (for the under-14 rule) birth date only: load
        # and decrypt nothing else on this hot path.
        subject = DataSubject.objects.only("id", "key_id", "birth_date").filter(pk=pk).first() if pk else None
        if subject is None:
            return _not_found(UNKNOWN_SUBJECT)
        purpose = Purpose.objects.filter(code=code).first()
        if purpose is None:
            return _not_found(UNKNOWN_PURPOSE)
        decision = services.may_process(subject=subject, purpose=purpose, at=at)
        return Response(CheckResultSerializer(_result(reference, code, at, decision)).data)


_PURPOSE_CODE = re.compile(r"[-a-zA-Z0-9_]{1,64}")


def _iso(moment: datetime) -> str:
    """What DRF's DateTimeField writes (current time zone, ISO 8601, "Z" for UTC), without
    building a field per call."""
    text = timezone.localtime(moment).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _plain_check(params: Any) -> tuple[str, int, str] | None:
    """(reference, subject id, purpose code) when the query is the common, well-formed "now"
    question; anything else (a moment `at`, a malformed value, extra care) takes the
    serializer's path, which also words the errors."""
    if len(params) != 2:
        return None
    reference, code = params.get("subject", ""), params.get("purpose", "")
    if len(reference) > 32 or not _PURPOSE_CODE.fullmatch(code):
        return None
    pk = _subject_pk(reference)
    return (reference, pk, code) if pk else None


def _check_now(reference: str, pk: int, code: str) -> Response:
    """The answer for now from one statement (`consent_check_now`), rendered without a
    serializer: the same fields and formats as CheckResultSerializer."""
    found = consent_check_now(subject_pk=pk, purpose_code=code)
    if found.subject is None:
        return _not_found(UNKNOWN_SUBJECT)
    if found.decision is None:
        return _not_found(UNKNOWN_PURPOSE)
    return Response(_answer(reference, code, found.decision))


def _answer(reference: str, code: str, decision: services.Decision) -> dict[str, Any]:
    event = decision.event
    return {
        "subject": reference,
        "purpose": code,
        "at": _iso(timezone.now()),
        "allowed": decision.allowed,
        "reason": decision.reason,
        "receipt_id": str(event.receipt_id) if event else None,
        "event_at": _iso(event.occurred_at) if event else None,
    }


def _answered_plainly(request: HttpRequest) -> HttpResponse | None:
    """The consent check's common case, answered without DRF's request, negotiation and
    renderer machinery (a product asks it for every page it renders): a GET with a live key
    holding the scope, under its limit, asking the plain "now" question of a subject and a
    purpose that exist. It uses the same functions as the DRF path — authentication, scope,
    limit, statement — and answers the same body; anything else (no or bad key, missing
    scope, over the limit, `at`, malformed or unknown values) returns None and goes through
    DRF, which words every refusal. A test holds both paths' answers equal."""
    if request.method != "GET":
        return None
    keyword, _space, presented = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    plain = _plain_check(request.GET)
    if keyword.lower() != KEYWORD.lower() or plain is None:
        return None
    key = apikeys.api_key_authenticate(presented=presented.strip())
    if key is None or CONSENT_CHECK not in key.scopes:
        return None
    found = consent_check_now(subject_pk=plain[1], purpose_code=plain[2])
    # Counted here, once: a question that falls through is counted by DRF's throttle instead.
    if found.decision is None or not _within_limit(key):
        return None
    apikeys.api_key_touch(key=key)
    response = JsonResponse(
        _answer(plain[0], plain[2], found.decision),
        json_dumps_params={"ensure_ascii": False, "separators": (",", ":")},
    )
    response["Vary"] = "Accept"  # as DRF's negotiated responses say
    response["Allow"] = "GET, OPTIONS"
    return response


def _not_found(reason: str) -> Response:
    detail = (
        _("No data subject has this reference.")
        if reason == UNKNOWN_SUBJECT
        else _("There is no purpose with this code.")
    )
    return Response({"detail": detail, "reason": reason}, status=status.HTTP_404_NOT_FOUND)


class ConsentCheckBulk(_ConsentCheckBase):
    parser_classes = [JSONParser]

    @extend_schema(
        summary="Many consent checks in one call",
        description=f"At most {MAX_BULK_CHECKS} checks. An unknown subject or purpose answers "
        '`allowed: false` with reason "unknown subject" or "unknown purpose" for that check.',
        request=BulkCheckSerializer,
        responses={
            200: BulkCheckResultSerializer,
            400: _400,
            401: _NO_KEY,
            403: _NO_SCOPE,
            429: _LIMITED,
        },
    )
    def post(self, request: Request) -> Response:
        data = BulkCheckSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        checks: list[dict[str, Any]] = data.validated_data["checks"]
        pks = {c["subject"]: _subject_pk(c["subject"]) for c in checks}
        subjects = DataSubject.objects.in_bulk({pk for pk in pks.values() if pk})
        purposes = Purpose.objects.in_bulk({c["purpose"] for c in checks}, field_name="code")
        answered: dict[tuple[int, int, datetime | None], services.Decision] = {}
        results = []
        for check in checks:
            reference, code, at = check["subject"], check["purpose"], check.get("at")
            pk = pks[reference]
            subject = subjects.get(pk) if pk else None
            purpose = purposes.get(code)
            if subject is None:
                results.append(_result(reference, code, at, None, UNKNOWN_SUBJECT))
                continue
            if purpose is None:
                results.append(_result(reference, code, at, None, UNKNOWN_PURPOSE))
                continue
            seen = (subject.pk, purpose.pk, at)
            if seen not in answered:
                answered[seen] = services.may_process(subject=subject, purpose=purpose, at=at)
            results.append(_result(reference, code, at, answered[seen]))
        return Response({"results": CheckResultSerializer(results, many=True).data})
