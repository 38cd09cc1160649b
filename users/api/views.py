"""
The live page at ``/``, the REST API (``/api/v1/users`` and
``/api/v1/users/<id>``), the socket's AsyncAPI document, ``/healthz`` and
``/metrics``.
"""

import asyncio
import functools
import hmac
import ipaddress
import logging

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.mixins import UserPassesTestMixin
from django.db import connection
from django.db.models import Subquery
from django.http import Http404, HttpResponse, HttpResponseNotModified, JsonResponse
from django.urls import reverse_lazy
from django.utils.cache import parse_etags
from django.views.decorators.http import require_safe
from django.views.generic import TemplateView
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from rest_framework import generics, serializers, status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.response import Response

from .. import commands, redis_clients, services
from ..live import snapshots
from ..models import VERSION_ROW, User, UserListVersion, parse_user_id
from ..permissions import CanReadUsers, CanWriteUsers, has_write_permission, may_read
from ..serializers import UserSerializer
from ..sockets.routing import SOCKET_PATH
from ..throttling import AnonymousReadRateThrottle, WriteRateThrottle
from .filters import QueryFilter
from .pagination import QueryPagination

logger = logging.getLogger(__name__)


class LiveListPage(UserPassesTestMixin, TemplateView):
    """The live list in a browser, with a form that adds users over the socket."""

    template_name = "users/live_list.html"
    # Readers who may not read (anonymous, USERS_ANONYMOUS_READS off) go to the login.
    login_url = reverse_lazy("admin:login")

    def test_func(self):
        return may_read(self.request.user)

    def get_context_data(self, **kwargs):
        user = self.request.user
        return super().get_context_data(
            socket_path=SOCKET_PATH,
            can_add=has_write_permission(user, "add"),
            can_edit=user.is_staff and user.has_perm("users.change_user"),
            **kwargs,
        )


IDEMPOTENCY_KEY = "Idempotency-Key"
IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_KEY,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "1 to 64 characters. The same key from the same account again within "
        "USERS_HISTORY_SECONDS gets the first answer and changes nothing (422 if it "
        "was used for another request)."
    ),
)
IF_MATCH_PARAMETER = OpenApiParameter(
    "If-Match",
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "The user's ETag as last read: the write happens only if the user has not "
        "changed since (412 otherwise). `*`: any version."
    ),
)
ETAG_HEADER = OpenApiParameter(
    "ETag",
    location=OpenApiParameter.HEADER,
    response=True,
    description="The user's version, with the list's epoch: send it in If-Match.",
)
IF_NONE_MATCH_PARAMETER = OpenApiParameter(
    "If-None-Match",
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "An ETag of an earlier answer (or several, comma-separated; `W/` allowed; `*`: any): "
        "304 without a body if it is still the current one."
    ),
)
NOT_MODIFIED = OpenApiResponse(description="Not modified since the ETag in If-None-Match.")
VERSION_HEADER = "Users-Version"
VERSION_HEADER_PARAMETER = OpenApiParameter(
    VERSION_HEADER,
    location=OpenApiParameter.HEADER,
    response=True,
    description=(
        "The list's version at which this write committed: a socket client holding "
        "this version (or a later one) holds the write."
    ),
)
REPLAYED_STATUS = {"create": status.HTTP_201_CREATED, "update": status.HTTP_200_OK}


class PreconditionFailed(APIException):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_detail = "The user changed since the version in If-Match; nothing was changed."
    default_code = "precondition_failed"


def etag(version: int, epoch: str | None = None) -> str:
    """An ETag: ``version`` in ``epoch``, by default the list's (versions repeat across epochs)."""
    if epoch is None:
        epoch, _ = snapshots.current_version()
    return f'"{epoch}.{version}"'


def conditional(request, tag: str, answer) -> HttpResponse:
    """
    ``answer()`` with the ETag ``tag``; or, without calling it, 304 when
    If-None-Match names ``tag`` or is ``*`` (weak comparison, RFC 9110 13.1.2).
    """
    offered = parse_etags(request.headers.get("If-None-Match", ""))
    if offered == ["*"] or tag in {other.removeprefix("W/") for other in offered}:
        response = HttpResponseNotModified()
    else:
        response = answer()
    response["ETag"] = tag
    return response


def write_answer(data, version: int | None, code: int, *, user: bool = True) -> Response:
    """The answer to a write that committed at ``version`` (None: a receipt older than that)."""
    response = Response(data, status=code)
    if version is not None:
        response[VERSION_HEADER] = str(version)
        if user:
            response["ETag"] = etag(version)
    return response


class UserViewMixin:
    queryset = User.objects.order_by("id")
    serializer_class = UserSerializer
    permission_classes = [CanReadUsers, CanWriteUsers]
    throttle_classes = [WriteRateThrottle]

    def get_object(self):
        """The user the URL names; 404 where it names none (users.models.parse_user_id)."""
        if parse_user_id(self.kwargs["pk"]) is None:
            raise NotFound
        return super().get_object()

    def write_once_per_key(self, request, action: str, write) -> Response:
        """
        Run ``write`` once per Idempotency-Key of this account (users.commands).

        A retry gets the first answer again: 201 or 200 with the user, or 204.
        Anonymous writers have no account to keep their keys apart, so they may
        not send one.
        """
        key = request.headers.get(IDEMPOTENCY_KEY)
        if key is None:
            return write()
        if not request.user.is_authenticated:
            raise ValidationError({IDEMPOTENCY_KEY: [ANONYMOUS_KEY_REFUSED]})
        try:
            commands.check_request_id(key)
        except commands.CommandError as exc:
            raise ValidationError({IDEMPOTENCY_KEY: [exc.message]}) from None
        target = "" if action == "create" else str(parse_user_id(self.kwargs["pk"]))
        answers = []

        def perform() -> dict:
            answers.append(response := write())
            version = int(response[VERSION_HEADER])
            if action == "delete":
                return {"deleted": target, "version": version}
            return {"user": response.data, "version": version}

        requester = commands.requester_key(request.user, None)
        fields = {name: request.data[name] for name in commands.FIELDS if name in request.data}
        if_match = request.headers.get("If-Match")
        if if_match is not None:
            fields["if_match"] = if_match
        try:
            result, replayed = commands.idempotent(requester, key, action, target, fields, perform)
        except commands.CommandError as exc:
            return Response({"detail": exc.message}, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
        if not replayed:
            return answers[0]
        # Also when this request wrote, but the same one committed first and
        # this write was rolled back: its answer would name a user never saved.
        if action == "delete":
            return write_answer(None, result.get("version"), status.HTTP_204_NO_CONTENT, user=False)
        return write_answer(result["user"], result.get("version"), REPLAYED_STATUS[action])


ANONYMOUS_KEY_REFUSED = (
    "Log in or send a token to use an Idempotency-Key: anonymous writers share "
    "no account that would keep their keys apart."
)


DETAIL = inline_serializer("Detail", {"detail": serializers.CharField()})
ANONYMOUS_READ_REFUSED = OpenApiResponse(
    DETAIL, description="No login or token, where USERS_ANONYMOUS_READS is off."
)
LIST_ETAG_HEADER = OpenApiParameter(
    "ETag",
    location=OpenApiParameter.HEADER,
    response=[200, 304],
    description=(
        "The list's version, with its epoch, whatever the query: send it in If-None-Match "
        "with the same URL."
    ),
)
LIST_DESCRIPTION = (
    'Without `search`, `order`, `limit` or `cursor`: every user, by id (`{"users": [...]}`). '
    "With any of them: a page of the users whose name or email contains `search`, in `order`, "
    f"`limit` at a time ({QueryPagination.page_size} without one), with `total`, how many match, "
    "and `next`, the next page's URL (null on the last): the page with a `limit` holds the "
    "users of a socket's window with the same query. Anonymous readers are limited to "
    "USERS_REST_ANONYMOUS_READ_RATE per address."
)
RETRY_AFTER_HEADER = OpenApiParameter(
    "Retry-After",
    type=int,
    location=OpenApiParameter.HEADER,
    response=[429],
    description="Seconds until the next read is allowed.",
)


@extend_schema_view(
    get=extend_schema(
        description=LIST_DESCRIPTION,
        parameters=[IF_NONE_MATCH_PARAMETER, LIST_ETAG_HEADER, RETRY_AFTER_HEADER],
        responses={
            200: UserSerializer(many=True),
            304: NOT_MODIFIED,
            400: OpenApiResponse(DETAIL, description="A query parameter out of range."),
            401: ANONYMOUS_READ_REFUSED,
            429: OpenApiResponse(
                DETAIL, description="Anonymous reads over USERS_REST_ANONYMOUS_READ_RATE."
            ),
        },
    ),
    post=extend_schema(
        parameters=[IDEMPOTENCY_KEY_PARAMETER, ETAG_HEADER, VERSION_HEADER_PARAMETER]
    ),
)
class UserList(UserViewMixin, generics.ListCreateAPIView):
    """List every user, or a page of them searched and ordered; or create one."""

    filter_backends = [QueryFilter]
    pagination_class = QueryPagination
    throttle_classes = [WriteRateThrottle, AnonymousReadRateThrottle]

    def list(self, request, *args, **kwargs):
        users = self.filter_queryset(self.get_queryset())  # an invalid query: 400, never 304
        # The version before the users, so that they are at least as new as the
        # ETag: an answer never carries the ETag of a list newer than its own.
        epoch, version = snapshots.current_version()
        return conditional(request, etag(version, epoch), lambda: self.answer(users))

    def answer(self, users) -> Response:
        page = self.paginate_queryset(users)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def create(self, request, *args, **kwargs):
        return self.write_once_per_key(request, "create", self.perform_write)

    def perform_write(self) -> Response:
        serializer = self.get_serializer(data=self.request.data)
        serializer.is_valid(raise_exception=True)
        user = serializer.save()
        return write_answer(serializer.data, user.version, status.HTTP_201_CREATED)


WRITE_PARAMETERS = [IDEMPOTENCY_KEY_PARAMETER, IF_MATCH_PARAMETER, VERSION_HEADER_PARAMETER]
USER_ETAG_HEADER = OpenApiParameter(
    "ETag",
    location=OpenApiParameter.HEADER,
    response=[200, 304],
    description="The user's version, with the list's epoch: send it in If-None-Match or If-Match.",
)
PRECONDITION_FAILED = OpenApiResponse(description="The user changed since the If-Match version.")


@extend_schema_view(
    get=extend_schema(
        parameters=[IF_NONE_MATCH_PARAMETER, USER_ETAG_HEADER],
        responses={200: UserSerializer, 304: NOT_MODIFIED, 401: ANONYMOUS_READ_REFUSED},
    ),
    put=extend_schema(
        parameters=[*WRITE_PARAMETERS, ETAG_HEADER],
        responses={200: UserSerializer, 412: PRECONDITION_FAILED},
    ),
    patch=extend_schema(
        parameters=[*WRITE_PARAMETERS, ETAG_HEADER],
        responses={200: UserSerializer, 412: PRECONDITION_FAILED},
    ),
    delete=extend_schema(
        parameters=WRITE_PARAMETERS, responses={204: None, 412: PRECONDITION_FAILED}
    ),
)
class UserDetail(UserViewMixin, generics.RetrieveUpdateDestroyAPIView):
    """Read, change or delete one user."""

    # The list's epoch in the user's own query: its ETag costs no query of its own.
    queryset = User.objects.annotate(
        epoch=Subquery(UserListVersion.objects.filter(pk=VERSION_ROW).values("epoch"))
    )

    def retrieve(self, request, *args, **kwargs):
        user = self.get_object()
        tag = etag(user.version, user.epoch)
        return conditional(request, tag, lambda: Response(self.get_serializer(user).data))

    def if_match(self, user: User) -> int | None:
        """The version that If-Match requires ``user`` to be at (None: any); 412 if it is not."""
        header = self.request.headers.get("If-Match")
        if header is None or header.strip() == "*":
            return None
        if etag(user.version, user.epoch) not in {tag.strip() for tag in header.split(",")}:
            raise PreconditionFailed
        return user.version

    def update(self, request, *args, **kwargs):
        partial = kwargs.pop("partial", False)
        return self.write_once_per_key(request, "update", lambda: self.perform_update_of(partial))

    def perform_update_of(self, partial: bool) -> Response:
        user = self.get_object()
        serializer = self.get_serializer(user, data=self.request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        try:
            user = serializer.save(if_version=self.if_match(user))
        except services.UserChangedError:
            raise PreconditionFailed from None
        return write_answer(serializer.data, user.version, status.HTTP_200_OK)

    def destroy(self, request, *args, **kwargs):
        return self.write_once_per_key(request, "delete", self.perform_delete)

    def perform_delete(self) -> Response:
        user = self.get_object()
        try:
            version = services.user_delete(user, if_version=self.if_match(user))
        except User.DoesNotExist:
            raise NotFound from None  # another writer deleted it first
        except services.UserChangedError:
            raise PreconditionFailed from None
        return write_answer(None, version, status.HTTP_204_NO_CONTENT, user=False)


ASYNCAPI_DOCUMENT = settings.BASE_DIR / "docs" / "asyncapi.yaml"
ASYNCAPI_CONTENT_TYPE = "application/yaml"  # RFC 9512


@functools.cache
def asyncapi_document() -> bytes:
    return ASYNCAPI_DOCUMENT.read_bytes()


@require_safe
def asyncapi(request):
    """Serve the AsyncAPI 3 description of the socket's protocols v1 and v2 (docs/asyncapi.yaml)."""
    return HttpResponse(asyncapi_document(), content_type=ASYNCAPI_CONTENT_TYPE)


HEALTH_CHECK_TIMEOUT = 3  # seconds: a probe must answer before the load balancer gives up


@database_sync_to_async
def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def _check_channel_layer() -> None:
    if not settings.REDIS_URL:
        return  # the in-memory layer lives in this process
    client = redis_clients.client()
    try:
        await client.ping()
    finally:
        await client.aclose()


async def health(request):
    """
    Report whether this process reaches its database and its channel layer.

    200 when both answer, 503 otherwise, so that a load balancer takes the
    process out of rotation: without the database nothing works, and without
    the channel layer its sockets miss other processes' changes. The answer
    names only what fails: anyone may ask, and an error's text (hosts, ports,
    the driver's message) is for the operator's log.
    """
    checks = {"database": _check_database, "channel_layer": _check_channel_layer}
    report = {}
    for name, check in checks.items():
        try:
            async with asyncio.timeout(HEALTH_CHECK_TIMEOUT):
                await check()
        except TimeoutError:
            logger.warning("Health check: %s did not answer in %s s", name, HEALTH_CHECK_TIMEOUT)
            report[name] = "failing"
        except Exception as exc:
            logger.warning("Health check: %s failing: %s: %s", name, type(exc).__name__, exc)
            report[name] = "failing"
        else:
            report[name] = "ok"
    healthy = all(result == "ok" for result in report.values())
    return JsonResponse(report, status=200 if healthy else 503)


def may_scrape(request) -> bool:
    """Whether ``request`` carries METRICS_TOKEN or comes from METRICS_ALLOWED_IPS."""
    token = settings.METRICS_TOKEN
    offered = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(
        address in ipaddress.ip_network(allowed, strict=False)
        for allowed in settings.METRICS_ALLOWED_IPS
    )


@require_safe
async def metrics(request):
    """
    Serve this process's metrics in Prometheus' text format (users.metrics).

    Anyone else gets 404, as if there were none. Async, so that the open sockets
    are counted on the event loop that adds and removes them.
    """
    if not may_scrape(request):
        raise Http404
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
