"""The HTTP API: topics, images, publishing over HTTP, health."""

from __future__ import annotations

import asyncio
import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.convertors import PathConvertor, register_url_convertor

from .auth import bearer
from .errors import ImageTooLargeError, RedisUnavailableError
from .history import read_history, read_history_image
from .images import CONTENT_TYPES
from .protocol import MAX_DESCRIPTION_LENGTH, MAX_NAME_LENGTH, TopicImage
from .ratelimit import publisher_key
from .service import Service


class _TopicConvertor(PathConvertor):
    # Like ":path", but also matching control characters, so a bad topic gets a precise 422
    # from the validator instead of a bare 404.
    regex = "(?s:.+)"


class _WholeTopicConvertor(PathConvertor):
    # A topic at the end of the path: never one ending in a reserved suffix, so that
    # ".../history" and ".../image" answer 405 to methods they do not have.
    regex = "(?s:(?!.*/history/)(?!.*/(?:image|history)$).+)"


register_url_convertor("topic", _TopicConvertor())
register_url_convertor("whole_topic", _WholeTopicConvertor())

router = APIRouter()

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


def _live(service: Service, topic: str) -> TopicImage:
    image = service.hub.get(topic)
    if image is None:
        raise HTTPException(404, f"no live image for topic {topic!r}")
    return image


@router.get("/api/topics")
async def list_topics(service: ServiceDep) -> list[Topic]:
    """Every live topic, newest first."""
    return [Topic(**image.topic_object()) for image in service.hub.images()]


@router.get("/api/topics/{topic:topic}/history", responses={404: {}})
async def topic_history(topic: str, service: ServiceDep) -> list[HistoryEntry]:
    """The topic's kept images, newest first: metadata only, fetch images one by one."""
    current = _live(service, topic)
    entries = await read_history(service.publisher.redis, service.settings.keys, topic)
    if not entries or entries[0]["seq"] < current.seq:  # a publisher that keeps no history
        entries.insert(0, current.metadata())
    return [HistoryEntry(**entry) for entry in entries]


@router.get(
    "/api/topics/{topic:topic}/history/{seq:int}/image",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}, 304: {}, 404: {}},
)
async def history_image(topic: str, seq: int, request: Request, service: ServiceDep) -> Response:
    """One kept image of the topic, by sequence number."""
    current = _live(service, topic)
    if current.seq == seq:
        return _image_response(request, current.data, current.content_type, current.digest)
    found = await read_history_image(service.publisher.redis, service.settings.keys, topic, seq)
    if found is None:
        raise HTTPException(404, f"image {seq} of topic {topic!r} is not kept")
    meta, data = found
    return _image_response(request, data, meta["content_type"], meta["digest"])


@router.head("/api/topics/{topic:topic}/image", include_in_schema=False)
@router.get(
    "/api/topics/{topic:topic}/image",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}, 304: {}, 404: {}},
)
async def topic_image(topic: str, request: Request, service: ServiceDep) -> Response:
    """The topic's current image; ETag is its digest, so unchanged images answer 304."""
    image = _live(service, topic)
    return _image_response(request, image.data, image.content_type, image.digest)


def _image_response(request: Request, data: bytes, content_type: str, digest: str) -> Response:
    headers = {"ETag": f'"{digest}"', "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") in (headers["ETag"], digest):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=content_type, headers=headers)


@router.get("/api/topics/{topic:whole_topic}", responses={404: {}})
async def get_topic(topic: str, service: ServiceDep) -> Topic:
    """One live topic's metadata."""
    return Topic(**_live(service, topic).topic_object())


@router.post(
    "/api/topics/{topic:whole_topic}",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {content_type: {"schema": {}} for content_type in CONTENT_TYPES},
        }
    },
    responses={400: {}, 401: {}, 403: {}, 413: {}, 415: {}, 422: {}, 429: {}, 503: {}},
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
    client = request.client.host if request.client else "unknown"
    wait = service.publish_limiter.retry_after(publisher_key(bearer(request.headers), client))
    if wait:
        service.hub.stats.publish_rate_limited += 1
        raise HTTPException(
            429,
            f"publish rate limit of {service.publish_limiter.rate:g}/s exceeded; "
            f"retry in {wait:.1f} s",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    data = await _read_body(request, service.settings.max_image_bytes)
    await service.publisher.publish(topic, experiment, data, description)
    return Topic(**(await service.publisher.grab(topic)).topic_object())


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ImageTooLargeError(int(declared), limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ImageTooLargeError(len(body), limit)
    return bytes(body)


@router.get("/api/stats")
async def stats(service: ServiceDep) -> dict[str, Any]:
    """Counters of viewers, dropped frames, disconnect reasons and Redis reconnects."""
    return {
        "topics": service.hub.topic_count,
        "viewers": service.hub.viewer_count,
        **service.hub.stats.as_dict(),
    }


@router.get("/healthz", responses={503: {"model": Health}})
async def healthz(service: ServiceDep) -> JSONResponse:
    """200 when Redis answers and the update subscription is live, else 503 with the reason."""
    reason = None
    try:
        async with asyncio.timeout(_HEALTH_TIMEOUT):
            await service.publisher.ping()
    except RedisUnavailableError as exc:
        reason = str(exc)
    except TimeoutError:
        reason = f"Redis did not answer within {_HEALTH_TIMEOUT} s"
    if reason is None and not service.feed.subscribed.is_set():
        reason = "Redis answers but the update subscription is not re-established yet"
    health = Health(
        status="unavailable" if reason else "ok",
        reason=reason,
        topics=service.hub.topic_count,
        viewers=service.hub.viewer_count,
    )
    return JSONResponse(health.model_dump(), status_code=503 if reason else 200)
