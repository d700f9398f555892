"""REST API v1 for requesters: serializers and views.

Signed-in subjects (browser session, or an app's allauth X-Session-Token) list, create, read
and withdraw their own requests. People without an account create a request anonymously and
prove their e-mail address with the code it receives. Every bad input answers 400 with field
messages; a request that is not yours answers 404, like one that does not exist.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpResponseBase, StreamingHttpResponse
from django.urls import reverse
from django.utils import translation
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound, Throttled
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import DataSubject, User
from accounts.services import subject_for_user
from core.audit import Actor
from dsar import cancellation as cancellation_services
from dsar import corrections, services, views
from dsar.erasure import Line
from dsar.forms import (
    MAX_CANCELLATION_REASON,
    MAX_DETAILS,
    MAX_DOCUMENTS,
    MAX_NAME,
    MAX_RELATIONSHIP,
    TYPE_EXPLANATIONS,
)
from dsar.models import (
    EXPORT_TYPES,
    AccountCancellation,
    CorrectionItem,
    DataExport,
    DataSubjectRequest,
    OnBehalf,
    RequestType,
    Status,
)

# --- Serializers -----------------------------------------------------------------------------


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


class CodedDetailSerializer(DetailSerializer):
    code = serializers.CharField(
        required=False,
        help_text="reauthentication_required, not_ready, expired, key_destroyed, missing or corrupt",
    )


class TimelineEntrySerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    kind = serializers.CharField()
    text = serializers.CharField()
    body = serializers.CharField(allow_blank=True)


class RequestSerializer(serializers.ModelSerializer):
    """One of the requester's requests, as they may see it (no staff identities, no notes)."""

    type_label = serializers.CharField(source="get_type_display", read_only=True)
    status_label = serializers.CharField(source="get_status_display", read_only=True)
    working_days_left = serializers.SerializerMethodField()
    can_withdraw = serializers.BooleanField(source="is_open", read_only=True)

    class Meta:
        model = DataSubjectRequest
        fields = [
            "id",
            "reference",
            "type",
            "type_label",
            "status",
            "status_label",
            "on_behalf",
            "submitted_at",
            "verified_at",
            "due_date",
            "deadline_provisional",
            "working_days_left",
            "closed_at",
            "can_withdraw",
        ]
        read_only_fields = fields

    def get_working_days_left(self, obj: DataSubjectRequest) -> int | None:
        return views.days_left(obj)


class CorrectionSerializer(serializers.Serializer):
    """One proposed new value and what became of it."""

    id = serializers.IntegerField(source="item.pk")
    target = serializers.CharField(source="item.target")
    table = serializers.CharField(source="item.table")
    column = serializers.CharField(source="item.column")
    row = serializers.CharField(source="item.row", allow_null=True)
    field_label = serializers.CharField(source="label")
    proposed_value = serializers.CharField(source="item.proposed_value", allow_null=True)
    reason = serializers.CharField(source="item.reason", allow_null=True)
    decision = serializers.ChoiceField(source="item.decision", choices=CorrectionItem.Decision.choices)
    decision_reason = serializers.CharField(source="item.decision_reason", allow_null=True)
    outcome = serializers.ChoiceField(
        source="state", choices=["pending", "approved", "changed", "not_found", "refused"]
    )
    outcome_label = serializers.CharField(source="text")


class RequestDetailSerializer(RequestSerializer):
    explanation = serializers.SerializerMethodField()
    details = serializers.SerializerMethodField()
    answer = serializers.SerializerMethodField()
    refusal_ground = serializers.SerializerMethodField()
    refusal_ground_label = serializers.SerializerMethodField()
    refusal_explanation = serializers.SerializerMethodField()
    timeline = serializers.SerializerMethodField()
    corrections = serializers.SerializerMethodField()

    class Meta(RequestSerializer.Meta):
        fields = [
            *RequestSerializer.Meta.fields,
            "explanation",
            "details",
            "answer",
            "refusal_ground",
            "refusal_ground_label",
            "refusal_explanation",
            "timeline",
            "corrections",
        ]
        read_only_fields = fields

    def get_explanation(self, obj: DataSubjectRequest) -> str:
        return str(TYPE_EXPLANATIONS.get(obj.type, ""))

    def get_details(self, obj: DataSubjectRequest) -> str:
        # Stored as NULL when none were given (or once shredded): "" here, like `answer`.
        return obj.details or ""

    def get_answer(self, obj: DataSubjectRequest) -> str:
        return (obj.answer or "") if obj.status == Status.COMPLETED else ""

    def get_refusal_ground(self, obj: DataSubjectRequest) -> str:
        return obj.refusal_ground if obj.status == Status.REFUSED else ""

    def get_refusal_ground_label(self, obj: DataSubjectRequest) -> str:
        return str(obj.get_refusal_ground_display()) if obj.status == Status.REFUSED else ""

    def get_refusal_explanation(self, obj: DataSubjectRequest) -> str:
        return (obj.refusal_explanation or "") if obj.status == Status.REFUSED else ""

    @extend_schema_field(TimelineEntrySerializer(many=True))
    def get_timeline(self, obj: DataSubjectRequest) -> list[dict[str, Any]]:
        return [
            {"at": e.at, "kind": e.kind, "text": str(e.label), "body": e.body}
            for e in views.requester_timeline(obj)
        ]

    @extend_schema_field(CorrectionSerializer(many=True))
    def get_corrections(self, obj: DataSubjectRequest) -> list[dict[str, Any]]:
        if obj.type != RequestType.CORRECTION:
            return []
        return list(CorrectionSerializer(corrections.correction_outcomes(obj), many=True).data)


class ChangeSerializer(serializers.Serializer):
    """A new value for one correctable field (see GET /api/v1/correctable-fields/)."""

    target = serializers.CharField(
        max_length=40, help_text="“quanyi” for your profile, or the code of a product source."
    )
    table = serializers.CharField(
        max_length=63, required=False, allow_blank=True, default="", help_text="“profile” for Quanyi."
    )
    column = serializers.CharField(max_length=63)
    row = serializers.CharField(
        max_length=64,
        required=False,
        allow_null=True,
        default=None,
        help_text="The record's id, for tables with several records per person (e.g. orders).",
    )
    value = serializers.CharField(max_length=corrections.MAX_VALUE, trim_whitespace=True)
    reason = serializers.CharField(
        max_length=corrections.MAX_REASON, required=False, allow_blank=True, default=""
    )


class ChangeListField(serializers.ListField):
    """Errors as one entry per change, `{}` for the good ones: the shape the services answer
    with too (DRF's own is a dict keyed by position)."""

    def run_child_validation(self, data: list[Any]) -> list[Any]:
        try:
            return list(super().run_child_validation(data))
        except serializers.ValidationError as exc:
            detail: Any = exc.detail
            if isinstance(detail, dict):
                raise serializers.ValidationError([detail.get(i, {}) for i in range(len(data))]) from None
            raise


def _changes_field() -> serializers.ListField:
    return ChangeListField(
        child=ChangeSerializer(),
        required=False,
        default=list,
        max_length=corrections.MAX_CHANGES,
        help_text="Correction requests only (JSON): new values for fields of yours. A bad change "
        'answers 400 with {"changes": [{}, {"value": ["..."]}]}, one entry per change, and '
        "stores nothing.",
    )


class ChangesSerializer(serializers.Serializer):
    changes = ChangeListField(child=ChangeSerializer(), min_length=1, max_length=corrections.MAX_CHANGES)


class CorrectableSerializer(serializers.Serializer):
    target = serializers.CharField()
    table = serializers.CharField()
    column = serializers.CharField()
    row = serializers.CharField(allow_null=True)
    section = serializers.CharField()
    name = serializers.CharField()
    current = serializers.CharField(allow_blank=True)
    kind = serializers.CharField()


class CorrectableListingSerializer(serializers.Serializer):
    correctable = CorrectableSerializer(many=True, source="fields")
    unavailable = serializers.ListField(child=serializers.CharField())


class ExportSerializer(serializers.ModelSerializer):
    """The access package of a request: its progress, then where to download it."""

    status_label = serializers.CharField(source="get_status_display", read_only=True)
    percent = serializers.IntegerField(read_only=True, help_text="0-100; 100 only once ready.")
    expired = serializers.SerializerMethodField()
    filename = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField(
        help_text="Where the owner downloads the ZIP (needs a recent reauthentication); null when "
        "the package is not ready, expired, or the caller is not the person it is about."
    )

    class Meta:
        model = DataExport
        fields = [
            "id",
            "status",
            "status_label",
            "percent",
            "rows_done",
            "rows_total",
            "created_at",
            "started_at",
            "finished_at",
            "expires_at",
            "expired",
            "filename",
            "size",
            "sha256",
            "download_count",
            "download_url",
        ]
        read_only_fields = fields

    def get_expired(self, obj: DataExport) -> bool:
        return views.export_expired(obj)

    def get_filename(self, obj: DataExport) -> str:
        return services.export_filename(obj)

    def get_download_url(self, obj: DataExport) -> str | None:
        user = self.context.get("user")
        if user is None or obj.status != "ready" or views.export_expired(obj):
            return None
        if not views.is_export_owner(user, obj):
            return None
        return reverse("api-request-export-download", args=[obj.request_id])


class _CreateBase(serializers.Serializer):
    type = serializers.ChoiceField(choices=RequestType.choices)
    on_behalf = serializers.ChoiceField(choices=OnBehalf.choices, default=OnBehalf.SELF)
    subject_name = serializers.CharField(max_length=MAX_NAME, required=False, allow_blank=True, default="")
    subject_email = serializers.EmailField(required=False, allow_blank=True, default="")
    relationship = serializers.CharField(
        max_length=MAX_RELATIONSHIP, required=False, allow_blank=True, default=""
    )
    documents = serializers.ListField(
        child=serializers.FileField(allow_empty_file=False),
        required=False,
        default=list,
        max_length=MAX_DOCUMENTS,
        help_text="Proof of authority when acting for someone else (multipart only): PDF, JPEG or PNG, "
        "at most 5 MB each.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("on_behalf", OnBehalf.SELF) != OnBehalf.SELF:
            errors = {}
            if not attrs.get("subject_name", "").strip():
                errors["subject_name"] = [_("Name the person you are acting for.")]
            if not attrs.get("relationship", "").strip():
                errors["relationship"] = [_("Say how you are related to them.")]
            if errors:
                raise serializers.ValidationError(errors)
        return attrs


class RequestCreateSerializer(_CreateBase):
    """A signed-in subject's new request."""

    details = serializers.CharField(max_length=MAX_DETAILS, required=False, allow_blank=True, default="")
    changes = _changes_field()


class PublicRequestCreateSerializer(_CreateBase):
    """A request from someone without an account; a 6-digit code goes to `email`."""

    name = serializers.CharField(max_length=MAX_NAME)
    email = serializers.EmailField()
    phone = serializers.CharField(max_length=32, required=False, allow_blank=True, default="")
    details = serializers.CharField(max_length=MAX_DETAILS)

    def validate_phone(self, value: str) -> str:
        digits = "".join(ch for ch in value if ch.isdigit())
        if value and not 7 <= len(digits) <= 15:
            raise serializers.ValidationError(_("Enter a valid phone number."))
        return value.strip()


class PublicRequestCreatedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    reference = serializers.CharField()
    status = serializers.CharField()
    detail = serializers.CharField()


class CodeSerializer(serializers.Serializer):
    code = serializers.RegexField(r"^\s*\d{6}\s*$", max_length=12)


class CodeRejectedSerializer(serializers.Serializer):
    """400 of the verify call: field messages for a malformed code, `detail` for a wrong one."""

    detail = serializers.CharField(
        required=False, help_text="Why the code was not accepted: wrong, expired, or too many tries."
    )
    code = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="The code is missing or not 6 digits."
    )


class PublicRequestVerifiedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    reference = serializers.CharField()
    status = serializers.CharField()
    contact_verified = serializers.BooleanField()


# --- Helpers ---------------------------------------------------------------------------------


def _service_errors(exc: DjangoValidationError) -> serializers.ValidationError:
    if isinstance(exc, corrections.ChangeErrors):
        return serializers.ValidationError({"changes": exc.changes})
    if hasattr(exc, "error_dict"):
        return serializers.ValidationError(exc.message_dict)
    return serializers.ValidationError({"non_field_errors": exc.messages})


def _throttled() -> Throttled:
    return Throttled(detail=views.limited_message())


def _session_of(request: Request) -> SessionBase | None:
    """The session behind this call: an app's X-Session-Token session, or the cookie one."""
    if isinstance(request.auth, SessionBase):
        return request.auth
    return getattr(request._request, "session", None)


class IsSubject(BasePermission):
    """Signed in as a data subject (staff accounts have no requests of their own)."""

    message = gettext_lazy("Only data subjects have requests here; staff work requests in the admin.")

    def has_permission(self, request: Request, view: APIView) -> bool:
        return views.is_subject_user(request.user)


_DOC_400 = OpenApiResponse(description="Invalid input: field messages.")
_DENIED = OpenApiResponse(DetailSerializer, description="Not signed in, or a staff account.")
_LIMITED = OpenApiResponse(DetailSerializer, description="Too many attempts: try again later.")
# DRF's page-number pagination answers 404 for a page that is not a positive number or is
# past the end.
NO_PAGE = OpenApiResponse(DetailSerializer, description="No such page.")

# --- Views -----------------------------------------------------------------------------------


class RequestListCreate(generics.ListAPIView):
    permission_classes = [IsSubject]
    serializer_class = RequestSerializer
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    def get_queryset(self) -> Any:
        return views.own_requests_for_list(self.request.user)

    @extend_schema(
        summary="Your requests, newest first",
        responses={200: RequestSerializer(many=True), 403: _DENIED, 404: NO_PAGE},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Make a request",
        description="A subject who reauthenticated within the last few minutes and acts for "
        "themselves is verified at once: the response then carries the due date.",
        request={
            "application/json": RequestCreateSerializer,
            "multipart/form-data": RequestCreateSerializer,
        },
        responses={201: RequestDetailSerializer, 400: _DOC_400, 403: _DENIED},
    )
    def post(self, request: Request) -> Response:
        data = RequestCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        try:
            dsr = views.submit_for_user(
                user=cast(User, request.user),
                session=_session_of(request),
                type=v["type"],
                on_behalf=v["on_behalf"],
                details=v["details"],
                relationship=v["relationship"],
                subject_name=v["subject_name"],
                subject_email=v["subject_email"],
                documents=v["documents"],
                changes=v["changes"],
            )
        except DjangoValidationError as exc:
            raise _service_errors(exc) from None
        return Response(RequestDetailSerializer(dsr).data, status=status.HTTP_201_CREATED)


class RequestDetail(APIView):
    permission_classes = [IsSubject]

    @extend_schema(
        summary="One of your requests",
        responses={200: RequestDetailSerializer, 403: _DENIED, 404: DetailSerializer},
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(RequestDetailSerializer(_own(request, pk)).data)


class RequestWithdraw(APIView):
    permission_classes = [IsSubject]

    @extend_schema(
        summary="Withdraw one of your requests",
        description="Repeating it is harmless. A closed request cannot be withdrawn (409).",
        request=None,
        responses={200: RequestDetailSerializer, 403: _DENIED, 404: DetailSerializer, 409: DetailSerializer},
    )
    def post(self, request: Request, pk: int) -> Response:
        dsr = _own(request, pk)
        try:
            dsr = services.request_withdraw(request=dsr, actor=Actor.of(request.user))
        except services.TransitionError as exc:
            return Response({"detail": " ".join(exc.messages)}, status=status.HTTP_409_CONFLICT)
        return Response(RequestDetailSerializer(dsr).data)


class RequestChanges(APIView):
    permission_classes = [IsSubject]
    parser_classes = [JSONParser]

    @extend_schema(
        summary="Propose more new values on one of your correction requests",
        description="For your own open correction request. All changes are stored, or none: a bad "
        "change answers 400 with one entry of field messages per change.",
        request=ChangesSerializer,
        responses={
            201: RequestDetailSerializer,
            400: _DOC_400,
            403: _DENIED,
            404: DetailSerializer,
            409: DetailSerializer,
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        dsr = _own(request, pk)
        data = ChangesSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            corrections.corrections_propose(
                request=dsr, actor=Actor.of(request.user), changes=data.validated_data["changes"]
            )
        except services.TransitionError as exc:
            return Response({"detail": " ".join(exc.messages)}, status=status.HTTP_409_CONFLICT)
        except DjangoValidationError as exc:
            raise _service_errors(exc) from None
        return Response(RequestDetailSerializer(dsr).data, status=status.HTTP_201_CREATED)


class CorrectableFields(APIView):
    permission_classes = [IsSubject]

    @extend_schema(
        summary="Your fields that a correction request may change, with the values held now",
        description="Use `target`, `table`, `column` and `row` of an entry in `changes` of a "
        "correction request. `unavailable` names sources that could not be read just now.",
        responses={200: CorrectableListingSerializer, 403: _DENIED},
    )
    def get(self, request: Request) -> Response:
        subject = DataSubject.objects.filter(user=cast(User, request.user)).first()
        if subject is None or subject.is_erased:
            return Response({"correctable": [], "unavailable": []})
        listing = corrections.correctable_fields(subject=subject)
        return Response(CorrectableListingSerializer(listing).data)


class RequestExport(APIView):
    permission_classes = [IsSubject]

    @extend_schema(
        summary="The access package of one of your requests",
        description="Progress while the package is prepared (`percent`, `rows_done` of `rows_total`), "
        "then its size, checksum, expiry and `download_url`. 404 when the request has no package "
        "(only access, copy and portability requests have one).",
        responses={200: ExportSerializer, 403: _DENIED, 404: DetailSerializer},
    )
    def get(self, request: Request, pk: int) -> Response:
        export = _own_export(request, pk)
        return Response(ExportSerializer(export, context={"user": request.user}).data)


class RequestExportDownload(APIView):
    permission_classes = [IsSubject]
    renderer_classes = [JSONRenderer]

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # Errors answer in JSON whatever the client accepts (an app asking for application/zip
        # gets no 406); the package itself is a streamed response of its own.
        renderer = JSONRenderer()
        return renderer, renderer.media_type

    @extend_schema(
        summary="Download the access package of one of your requests",
        description="The ZIP (data.json with schema.json, one CSV per table, index.html), decrypted as it "
        "streams. Only for the account of the person it is about, within "
        "`QUANYI_REAUTH_SECONDS` of a reauthentication (`POST /_allauth/app/v1/auth/reauthenticate` "
        "for an app session; 403 with `code: reauthentication_required` otherwise), while it is ready "
        "and not expired. Every download is counted and audited.",
        responses={
            (200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY, description="The ZIP file."),
            403: OpenApiResponse(
                CodedDetailSerializer, description="Not signed in, or reauthentication needed."
            ),
            404: DetailSerializer,
            409: OpenApiResponse(CodedDetailSerializer, description="The package is not ready yet."),
            410: OpenApiResponse(CodedDetailSerializer, description="Expired, or the data was erased."),
            500: OpenApiResponse(CodedDetailSerializer, description="The stored file is damaged or missing."),
        },
    )
    def get(self, request: Request, pk: int) -> HttpResponseBase:
        export = _own_export(request, pk)
        if not views.is_export_owner(request.user, export):
            raise NotFound()
        if not views.recently_reauthenticated(request.user, _session_of(request)):
            detail = _("Confirm your password again to download the package.")
            return Response(
                {"detail": detail, "code": "reauthentication_required"}, status=status.HTTP_403_FORBIDDEN
            )
        try:
            stream = services.export_download(export=export, actor=Actor.of(request.user))
        except services.ExportUnavailable as exc:
            code = 409 if exc.reason == "not_ready" else views.GONE_STATUS.get(exc.reason, 500)
            return Response({"detail": str(exc), "code": exc.reason}, status=code)
        response = StreamingHttpResponse(stream, content_type="application/zip")
        response["Content-Disposition"] = (
            content_disposition_header(True, services.export_filename(export)) or "attachment"
        )
        if export.size is not None:
            response["Content-Length"] = str(export.size)
        response["Cache-Control"] = "no-store, private"
        return response


def _own_export(request: Request, pk: int) -> DataExport:
    dsr = _own(request, pk)
    export = services.export_latest(dsr) if dsr.type in EXPORT_TYPES else None
    if export is None:
        raise NotFound()
    return export


def _own(request: Request, pk: int) -> DataSubjectRequest:
    try:
        return views.own_request(request.user, pk)
    except Http404:
        raise NotFound() from None


class PublicRequestCreate(APIView):
    # No session or token: nothing ambient to forge, so no CSRF either.
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(
        summary="Make a request without an account",
        description="Creates the request and e-mails a 6-digit code to `email` (valid 10 minutes). "
        "Limited to 10 requests an hour per client, and 5 codes an hour per address.",
        request={
            "application/json": PublicRequestCreateSerializer,
            "multipart/form-data": PublicRequestCreateSerializer,
        },
        responses={201: PublicRequestCreatedSerializer, 400: _DOC_400, 429: _LIMITED},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = PublicRequestCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        http = request._request
        if views.submission_limited(http) or views.code_sending_limited(http, views.email_key(v["email"])):
            raise _throttled()
        try:
            dsr = views.submit_public(
                type=v["type"],
                name=v["name"],
                email=v["email"],
                phone=v["phone"],
                on_behalf=v["on_behalf"],
                details=v["details"],
                relationship=v["relationship"],
                subject_name=v["subject_name"],
                subject_email=v["subject_email"],
                documents=v["documents"],
            )
        except DjangoValidationError as exc:
            raise _service_errors(exc) from None
        body = {
            "id": dsr.pk,
            "reference": dsr.reference,
            "status": dsr.status,
            "detail": _("We sent a 6-digit code to your e-mail address. It is valid for 10 minutes."),
        }
        return Response(body, status=status.HTTP_201_CREATED)


def _public_request(pk: int) -> DataSubjectRequest:
    found = DataSubjectRequest.objects.filter(pk=pk).first() if pk <= views.MAX_INT_ID else None
    if found is None:
        raise NotFound()
    return found


class PublicRequestVerify(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Confirm the e-mail address with the code",
        description="At most 5 tries per code; a code lasts 10 minutes. Limited to 30 tries per "
        "10 minutes per client.",
        request=CodeSerializer,
        responses={
            200: PublicRequestVerifiedSerializer,
            400: CodeRejectedSerializer,
            404: DetailSerializer,
            429: _LIMITED,
        },
        auth=[],
    )
    def post(self, request: Request, pk: int) -> Response:
        data = CodeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if views.code_checking_limited(request._request):
            raise _throttled()
        dsr = _public_request(pk)
        result = services.challenge_verify(request=dsr, code=data.validated_data["code"].strip())
        if not result.ok:
            return Response({"detail": result.reason}, status=status.HTTP_400_BAD_REQUEST)
        body = {"id": dsr.pk, "reference": dsr.reference, "status": dsr.status, "contact_verified": True}
        return Response(body)


class PublicRequestResend(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Send a new code",
        description="Earlier codes stop working. The answer is the same whether or not the request "
        "exists or has an address to write to.",
        request=None,
        responses={202: DetailSerializer, 404: DetailSerializer, 429: _LIMITED},
        auth=[],
    )
    def post(self, request: Request, pk: int) -> Response:
        dsr = _public_request(pk)
        address = views.requester_address(dsr)
        if views.code_sending_limited(request._request, views.email_key(address)):
            raise _throttled()
        if address and dsr.user_id is None:
            services.challenge_issue(request=dsr)
        detail = _("If the request has an e-mail address, a new code is on its way.")
        return Response({"detail": detail}, status=status.HTTP_202_ACCEPTED)


# --- Account cancellation (seed 000 §4.5) ------------------------------------------------------


class PlanLineSerializer(serializers.Serializer):
    what = serializers.CharField()
    rows = serializers.IntegerField()
    outcome = serializers.CharField()
    why = serializers.CharField(allow_blank=True)
    sensitive = serializers.BooleanField()


class CancellationPreviewSerializer(serializers.Serializer):
    scheduled_for = serializers.DateTimeField(help_text="When deletion would start if you confirmed now.")
    due_date = serializers.DateField(help_text="The request would be completed by this day at the latest.")
    cooling_off_days = serializers.IntegerField()
    deleted = PlanLineSerializer(many=True)
    kept = PlanLineSerializer(many=True, help_text="What the law requires us to keep, with the reason.")
    blocked = serializers.BooleanField(help_text="Staff must look at it before anything is deleted.")


class CancellationStateSerializer(serializers.Serializer):
    request_id = serializers.IntegerField()
    reference = serializers.CharField()
    state = serializers.ChoiceField(
        choices=["scheduled", "blocked", "erasing", "undone"],
        help_text="scheduled: in the cooling-off; blocked: staff look at it first (undo still "
        "possible); erasing: too late to undo; undone.",
    )
    scheduled_for = serializers.DateTimeField()
    due_date = serializers.DateField(allow_null=True)
    can_undo = serializers.BooleanField()
    undone_at = serializers.DateTimeField(allow_null=True)


class CancellationSerializer(serializers.Serializer):
    current = CancellationStateSerializer(allow_null=True, help_text="The pending cancellation, if any.")
    preview = CancellationPreviewSerializer(allow_null=True, help_text="Without one: what cancelling does.")


class CancellationConfirmSerializer(serializers.Serializer):
    reason = serializers.CharField(
        max_length=MAX_CANCELLATION_REASON,
        required=False,
        allow_blank=True,
        default="",
        help_text="Optional: why you are leaving.",
    )


def _lines(lines: list[Line]) -> list[dict[str, Any]]:
    return [
        {"what": x.label, "rows": x.rows, "outcome": x.outcome, "why": x.why, "sensitive": x.sensitive}
        for x in lines
    ]


def _state(cancellation: AccountCancellation, user: Any) -> dict[str, Any]:
    state = cancellation_services.cancellation_state(user=user)
    current = state is not None and state.cancellation.pk == cancellation.pk
    return {
        "request_id": cancellation.request_id,
        "reference": cancellation.request.reference,
        "state": state.status if state is not None and current else "undone",
        "scheduled_for": cancellation.scheduled_for,
        "due_date": cancellation.request.due_date,
        "can_undo": bool(state is not None and current and state.can_undo),
        "undone_at": cancellation.undone_at,
    }


_REAUTH = OpenApiResponse(
    DetailSerializer,
    description="Not reauthenticated within the last few minutes (allauth: "
    "`POST /_allauth/app/v1/auth/reauthenticate`), not signed in, or a staff account.",
)


class CancellationView(APIView):
    """The app's "账号设置-注销账户": the same rules as the portal's pages."""

    permission_classes = [IsSubject]

    @extend_schema(
        summary="Your pending account cancellation, or what cancelling would delete and keep",
        responses={200: CancellationSerializer, 403: _DENIED},
    )
    def get(self, request: Request) -> Response:
        current = cancellation_services.cancellation_current(user=request.user)
        if current is not None:
            return Response({"current": _state(current, request.user), "preview": None})
        preview = cancellation_services.cancellation_preview(
            subject=subject_for_user(user=cast(User, request.user)), language=translation.get_language()
        )
        body = {
            "scheduled_for": preview.scheduled_for,
            "due_date": preview.due_date,
            "cooling_off_days": preview.cooling_off_days,
            "deleted": _lines(preview.deleted),
            "kept": _lines(preview.kept),
            "blocked": preview.blocked,
        }
        return Response({"current": None, "preview": body})

    @extend_schema(
        summary="Cancel your account",
        description="Needs a reauthentication within the last few minutes, which also verifies "
        "the cancellation request (the 15-working-day clock starts). Deletion starts after the "
        "cooling-off (`scheduled_for`); signing in or DELETE undoes it until then. Repeating it "
        "returns the pending cancellation (200).",
        request=CancellationConfirmSerializer,
        responses={
            201: CancellationStateSerializer,
            200: CancellationStateSerializer,
            400: _DOC_400,
            403: _REAUTH,
        },
    )
    def post(self, request: Request) -> Response:
        data = CancellationConfirmSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = cast(User, request.user)
        if not views.recently_reauthenticated(user, _session_of(request)):
            return Response(
                {
                    "detail": _(
                        "Confirm it is you (enter your password again) before cancelling your account."
                    )
                },
                status=status.HTTP_403_FORBIDDEN,
            )
        existing = cancellation_services.cancellation_current(user=user)
        if existing is not None:
            return Response(_state(existing, user))
        try:
            cancellation = cancellation_services.cancellation_schedule(
                user=user,
                reauthenticated=True,
                reason=data.validated_data["reason"],
                language=translation.get_language() or "",
            )
        except DjangoValidationError as exc:
            raise _service_errors(exc) from None
        return Response(_state(cancellation, user), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Undo your account cancellation",
        description="Possible until the erasure is confirmed (409 after). No reauthentication needed.",
        request=None,
        responses={
            200: CancellationStateSerializer,
            403: _DENIED,
            404: DetailSerializer,
            409: DetailSerializer,
        },
    )
    def delete(self, request: Request) -> Response:
        current = cancellation_services.cancellation_current(user=request.user)
        if current is None:
            raise NotFound(_("There is no account cancellation to undo."))
        try:
            undone = cancellation_services.cancellation_undo(
                cancellation=current, actor=Actor.of(request.user), via=AccountCancellation.Via.API
            )
        except services.TransitionError as exc:
            return Response({"detail": " ".join(exc.messages)}, status=status.HTTP_409_CONFLICT)
        return Response(_state(undone, request.user))
