"""The HTTP API: topics, images, publishing over HTTP, metrics, liveness and readiness."""

from __future__ import annotations

import asyncio
import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.convertors import IntegerConvertor, PathConvertor, register_url_convertor
from starlette.types import Message, Receive, Scope, Send

from .auth import Access, AccessPolicy, needs
from .errors import ElogError, ImageTooLargeError, InvalidNameError
from .images import CONTENT_TYPES
from .previews import MAX_WIDTH, MIN_WIDTH, PreviewRefusedError
from .protocol import MAX_DESCRIPTION_LENGTH, MAX_NAME_LENGTH, validate_topic
from .records import HistoryLimits, TopicImage
from .service import Service
from .stats import CONTENT_TYPE


class _TopicConvertor(PathConvertor):
    # Like ":path", but also matching control characters, so a bad topic gets a precise 422
    # from the validator instead of a bare 404.
    regex = "(?s:.+)"


class _WholeTopicConvertor(PathConvertor):
    # A topic at the end of the path: never one ending in a reserved suffix, so that
    # ".../history" and ".../image" answer 405 to methods they do not have.
    regex = "(?s:(?!.*/history/)(?!.*/(?:image|history)$).+)"


class _SeqConvertor(IntegerConvertor):
    # At most 16 digits (seq < 2^53): longer numbers match no route (404), and never reach
    # int(), which refuses over 4300 digits.
    regex = "[0-9]{1,16}"


register_url_convertor("topic", _TopicConvertor())
register_url_convertor("seq", _SeqConvertor())
register_url_convertor("whole_topic", _WholeTopicConvertor())

router = APIRouter()


class _CountedRoute(APIRoute):
    """A route whose answers are counted by status (``Stats.http_publish``), whoever gave
    them: the access check (401, 403), validation (422), the handler or an error handler."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        status: int | None = None

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await super().handle(scope, receive, watch)
        except Exception:
            status = status or 500  # answered by the server's error middleware
            raise
        finally:
            if status is not None:  # else cancelled before answering: the client left
                service: Service = scope["app"].state.service
                service.stats.http_publish(status)


# HTTP publishing, on a router of its own whose routes are counted.
publishing = APIRouter(route_class=_CountedRoute)

NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]+$"

_HEALTH_TIMEOUT = 2.0


class Topic(BaseModel):
    """A topic's current image metadata (the image itself is at ``…/image``)."""

    topic: str
    experiment: str
    description: str
    seq: int
    updated_at: float
    content_type: str
    size: int
    digest: str
    expires_at: float | None


class Health(BaseModel):
    status: str
    reason: str | None = None
    topics: int
    viewers: int
    subscription_proof_age: float | None = None  # seconds since the feed last proved live


class HistoryEntry(BaseModel):
    """One kept image of a topic (the bytes are at ``…/history/{seq}/image``)."""

    topic: str
    seq: int
    experiment: str
    description: str
    updated_at: float
    content_type: str
    size: int
    digest: str


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


# Answers every read route may give besides 200, for the OpenAPI schema.
READ_ERRORS: dict[int | str, dict[str, Any]] = {404: {}, 409: {}, 503: {}}
IMAGE_CONTENT: dict[str, Any] = {"content": {content_type: {} for content_type in CONTENT_TYPES}}


MaxWidth = Annotated[
    int | None,
    Query(
        ge=MIN_WIDTH,
        le=MAX_WIDTH,
        description="a preview at most this many pixels wide (aspect kept, never upscaled)",
    ),
]


async def _current(service: Service, topic: str) -> TopicImage:
    """The topic's current image: from memory, else from Redis (a publish seconds old)."""
    try:
        image = await service.feed.lookup(validate_topic(topic))
    except InvalidNameError:
        image = None
    if image is None:
        raise HTTPException(404, f"no live image for topic {topic!r}")
    return image


@router.get("/api/topics", dependencies=needs(Access.VIEW))
async def list_topics(service: ServiceDep) -> list[Topic]:
    """Every live topic, newest first."""
    return [Topic(**image.topic_object()) for image in service.hub.images()]


# The limits the latest publish trimmed the history by, so that a viewer can drop what the
# next publishes evict without asking again (docs/protocol.md).
_HISTORY_HEADERS = {
    "Elog-History-Length": "images kept at most (their seqs span less than this)",
    "Elog-History-Bytes": "image bytes kept at most (the newest image is always kept)",
    "Elog-History-Seconds": "images published this long before the newest go (0: no limit)",
}
# What a topic whose publisher keeps no history serves: its current image only.
_CURRENT_ONLY = HistoryLimits(length=1, bytes=0, seconds=0.0)


@router.get(
    "/api/topics/{topic:topic}/history",
    responses={
        200: {"headers": {name: {"description": text} for name, text in _HISTORY_HEADERS.items()}},
        **READ_ERRORS,
    },
    dependencies=needs(Access.VIEW),
)
async def topic_history(topic: str, response: Response, service: ServiceDep) -> list[HistoryEntry]:
    """The topic's kept images, newest first: metadata only, fetch images one by one.

    The ``Elog-History-*`` headers give the limits the latest publish kept them by, when known.
    """
    current = await _current(service, topic)
    entries, limits = await service.store.history(topic)
    if not entries and limits is None:
        limits = _CURRENT_ONLY
    if not entries or entries[0]["seq"] < current.seq:  # a publisher that keeps no history
        entries.insert(0, current.metadata())
    if limits is not None:
        response.headers["Elog-History-Length"] = str(limits.length)
        response.headers["Elog-History-Bytes"] = str(limits.bytes)
        response.headers["Elog-History-Seconds"] = f"{limits.seconds:.15g}"
    return [HistoryEntry(**entry) for entry in entries]


@router.get(
    "/api/topics/{topic:topic}/history/{seq:seq}/image",
    response_class=Response,
    responses={200: IMAGE_CONTENT, 304: {}, 422: {}, **READ_ERRORS},
    dependencies=needs(Access.VIEW),
)
async def history_image(
    topic: str, seq: int, request: Request, service: ServiceDep, max_width: MaxWidth = None
) -> Response:
    """One kept image of the topic, by sequence number; with ``max_width``, a preview."""
    current = await _current(service, topic)
    image = current if current.seq == seq else await service.store.history_image(topic, seq)
    if image is None:
        raise HTTPException(404, f"image {seq} of topic {topic!r} is not kept")
    return await image_response(request, service, image, max_width)


@router.head(
    "/api/topics/{topic:topic}/image", include_in_schema=False, dependencies=needs(Access.VIEW)
)
@router.get(
    "/api/topics/{topic:topic}/image",
    response_class=Response,
    responses={200: IMAGE_CONTENT, 304: {}, 422: {}, **READ_ERRORS},
    dependencies=needs(Access.VIEW),
)
async def topic_image(
    topic: str, request: Request, service: ServiceDep, max_width: MaxWidth = None
) -> Response:
    """The topic's current image; ETag is its digest, so unchanged images answer 304.

    With ``max_width``, a preview at most that wide (made once per image and width, cached);
    422 for an image of too many pixels to preview.
    """
    return await image_response(request, service, await _current(service, topic), max_width)


async def image_response(
    request: Request, service: Service, image: TopicImage, max_width: int | None
) -> Response:
    """``image`` (or its preview ``max_width`` wide), its digest the ETag; 304 when the
    client holds it."""
    # The type comes from the image's magic bytes (records.py), never from what Redis says.
    # A preview is a function of the image and the width: its ETag says both.
    tag = image.digest if max_width is None else f"{image.digest}.w{max_width}"
    headers = {"ETag": f'"{tag}"', "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") in (headers["ETag"], tag):
        return Response(status_code=304, headers=headers)
    if max_width is None:
        return Response(image.data, media_type=image.content_type, headers=headers)
    try:
        preview = await service.previews.get(image, max_width)
    except PreviewRefusedError as exc:
        raise HTTPException(422, str(exc)) from None
    data = image.data if preview.data is None else preview.data
    return Response(data, media_type=preview.content_type, headers=headers)


@router.get(
    "/api/topics/{topic:whole_topic}", responses=READ_ERRORS, dependencies=needs(Access.VIEW)
)
async def get_topic(topic: str, service: ServiceDep) -> Topic:
    """One live topic's metadata."""
    return Topic(**(await _current(service, topic)).topic_object())


@publishing.post(
    "/api/topics/{topic:whole_topic}",
    status_code=201,
    dependencies=needs(Access.PUBLISH),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {content_type: {"schema": {}} for content_type in CONTENT_TYPES},
        }
    },
    responses={
        400: {},
        401: {},
        403: {},
        408: {},
        409: {},
        413: {},
        415: {},
        422: {},
        429: {},
        503: {},
        504: {},
    },  # fmt: skip
)
async def publish_topic(
    topic: str,
    request: Request,
    service: ServiceDep,
    experiment: Annotated[
        str,
        Query(
            description="experiment name, e.g. cxif7214",
            min_length=1,
            max_length=MAX_NAME_LENGTH,
            pattern=NO_CONTROL_CHARACTERS,
        ),
    ],
    description: Annotated[
        str,
        Query(
            description="free text shown with the plot",
            max_length=MAX_DESCRIPTION_LENGTH,
            pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$",
        ),
    ] = "",
) -> Topic:
    """Publish the request body (a PNG, JPEG, WebP or GIF image) as the topic's current image."""
    check_publish_rate(request, service)
    limit = service.settings.max_image_bytes
    async with service.bodies.read(request, limit, ImageTooLargeError) as data:
        image = await service.feed.publish(topic, experiment, data, description)
    return Topic(**image.topic_object())


def check_publish_rate(request: Request, service: Service) -> None:
    """Raise 429 when the caller's publishes (and pins) are over the rate limit: per valid
    token, else per client address."""
    policy: AccessPolicy = request.app.state.access
    client = request.client.host if request.client else "unknown"
    key = policy.identify(request).rate_key or f"address:{client}"
    wait = service.publish_limiter.retry_after(key)
    if wait:
        raise HTTPException(
            429,
            f"publish rate limit of {service.publish_limiter.rate:g}/s exceeded; "
            f"retry in {wait:.1f} s",
            headers={"Retry-After": str(math.ceil(wait))},
        )


@router.get("/api/stats", dependencies=needs(Access.VIEW))
async def stats(service: ServiceDep) -> dict[str, Any]:
    """The numbers of ``/metrics`` as JSON: viewers, images sent, dropped frames, disconnect
    reasons, Redis reconnects, feed errors, HTTP publishes."""
    return service.stats.as_dict()


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}}},
    dependencies=needs(Access.VIEW),
)
async def metrics(service: ServiceDep) -> Response:
    """The same numbers in the Prometheus text format; names start with ``elog_``."""
    return Response(service.stats.exposition(), media_type=CONTENT_TYPE)


@router.head("/healthz", include_in_schema=False, dependencies=needs(Access.PUBLIC))
@router.get("/healthz", responses={503: {"model": Health}}, dependencies=needs(Access.PUBLIC))
async def healthz(service: ServiceDep) -> JSONResponse:
    """Liveness: 200 while the event loop answers and the feed task runs, whatever Redis does.

    Else 503: restarting the process may help. Readiness is ``/readyz``.
    """
    reason = None if service.feed_running() else "the feed task is not running"
    return _health(service, reason)


@router.head("/readyz", include_in_schema=False, dependencies=needs(Access.PUBLIC))
@router.get("/readyz", responses={503: {"model": Health}}, dependencies=needs(Access.PUBLIC))
async def readyz(service: ServiceDep) -> JSONResponse:
    """Readiness: 200 when Redis answers and the update subscription is live and recently
    proven. Else 503 with the reason: viewers may be missing updates."""
    reason = None if service.feed_running() else "the feed task is not running"
    if reason is None:
        try:
            async with asyncio.timeout(_HEALTH_TIMEOUT):
                await service.store.ping()
        except ElogError as exc:
            reason = str(exc)
        except TimeoutError:
            reason = f"Redis at {service.store.url} did not answer within {_HEALTH_TIMEOUT} s"
    return _health(service, reason or service.feed.problem())


def _health(service: Service, reason: str | None) -> JSONResponse:
    age = service.feed.proof_age()
    health = Health(
        status="unavailable" if reason else "ok",
        reason=reason,
        topics=service.hub.topic_count,
        viewers=service.hub.viewer_count,
        subscription_proof_age=None if age is None else round(age, 2),
    )
    return JSONResponse(health.model_dump(), status_code=503 if reason else 200)
