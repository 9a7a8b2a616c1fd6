"""The logbook's HTTP routes (docs/protocol.md, "The logbook"): pin, retract, read, export."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, urlencode

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, ValidationError, field_validator
from starlette.convertors import PathConvertor, register_url_convertor

from .api import (
    IMAGE_CONTENT,
    READ_ERRORS,
    MaxWidth,
    ServiceDep,
    check_publish_rate,
    image_response,
)
from .auth import Access, AccessPolicy, Credential, needs
from .errors import RequestTooLargeError, TopicNotFoundError
from .logbook import (
    MAX_AUTHOR_LENGTH,
    MAX_COMMENT_LENGTH,
    MAX_PAGE,
    Entry,
    check_version,
    logbook_experiment,
    search_words,
    validate_author,
    validate_comment,
)
from .logbook_export import html_export, zip_export
from .protocol import ENTRY_ID, MAX_NAME_LENGTH, validate_topic
from .records import TopicImage
from .service import Service

MAX_REQUEST_BYTES = 64 * 1024  # a pin or retract request: a comment and a few names


class _ExperimentConvertor(PathConvertor):
    # An experiment name may hold "/" (sent percent-encoded, decoded before routing).
    regex = "(?s:.+)"


class _WholeExperimentConvertor(PathConvertor):
    # An experiment at the end of the path: never one that reaches into the routes below it,
    # so that ".../entries/0/image" is a 404, not the page of experiment "x/entries/0/image".
    regex = r"(?s:(?!.*/entries/)(?!.*/export\.(?:html|zip)$).+)"


class _EntryIdConvertor(PathConvertor):
    regex = "[^/]+"  # checked by EntryId: a bad one is a 422, not a 404 or 405


register_url_convertor("experiment", _ExperimentConvertor())
register_url_convertor("whole_experiment", _WholeExperimentConvertor())
register_url_convertor("entry_id", _EntryIdConvertor())


EntryId = Annotated[
    str,
    Path(pattern=f"^{ENTRY_ID.pattern}$", description="a Redis stream id"),
]
Experiment = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        pattern=r"^[^\x00-\x1f\x7f{}]+$",
        description="an experiment name (no control characters, no braces)",
    ),
]

router = APIRouter()
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **READ_ERRORS, 401: {}, 403: {}, 408: {}, 413: {}, 422: {}, 429: {}, 504: {},
}  # fmt: skip


class PinRequest(BaseModel):
    topic: str = Field(description="the topic whose image to pin")
    seq: int | None = Field(
        None, ge=0, le=2**53 - 1, description="the version to pin; absent: the current image"
    )
    digest: str | None = Field(
        None,
        pattern="^[0-9a-f]{64}$",
        description="the SHA-256 of the image seen: refused (404) if that version is now another",
    )
    comment: str = Field(max_length=MAX_COMMENT_LENGTH, description="plain text")
    author: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_AUTHOR_LENGTH,
        description="who pins; ignored when the caller logged in with a name",
    )

    _topic = field_validator("topic")(lambda value: validate_topic(value))
    _comment = field_validator("comment")(lambda value: validate_comment(value))
    _author = field_validator("author")(lambda value: value and validate_author(value))


class RetractRequest(BaseModel):
    reason: str = Field(max_length=MAX_COMMENT_LENGTH, description="why, plain text")
    author: str | None = Field(None, min_length=1, max_length=MAX_AUTHOR_LENGTH)

    _reason = field_validator("reason")(lambda value: validate_comment(value, "reason"))
    _author = field_validator("author")(lambda value: value and validate_author(value))


class RetractionModel(BaseModel):
    by: str
    reason: str
    at: float


class LogbookEntry(BaseModel):
    """One pinned image (the bytes are at ``image_url``)."""

    id: str
    experiment: str
    topic: str
    seq: int
    description: str
    digest: str
    content_type: str
    size: int
    published_at: float
    pinned_at: float
    author: str
    comment: str
    retracted: RetractionModel | None
    url: str
    image_url: str


class LogbookPage(BaseModel):
    experiment: str
    entries: list[LogbookEntry]
    next: str | None = Field(description="the URL of the next (older) page, relative to the root")


class LogbookSummary(BaseModel):
    experiment: str
    entries: int
    latest_pinned_at: float | None


Body = TypeVar("Body", bound=BaseModel)


async def _body(request: Request, service: Service, model: type[Body]) -> Body:
    def too_large(size: int, limit: int) -> RequestTooLargeError:
        return RequestTooLargeError(f"the request body is over {limit} bytes")

    async with service.bodies.read(request, MAX_REQUEST_BYTES, too_large) as body:
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            raise RequestValidationError(
                exc.errors(include_url=False, include_input=False)
            ) from None


def _author(request: Request, given: str | None) -> str:
    """The session's name when the caller logged in with one; else ``given``; else 422."""
    policy: AccessPolicy = request.app.state.access
    if policy.identify(request).credential is Credential.SESSION:
        session = policy.session(request)
        if session is not None and session.name is not None:
            return session.name
    if given is None:
        raise HTTPException(422, "author required: log in with a name, or give author")
    return given


def _model(entry: Entry) -> LogbookEntry:
    return LogbookEntry(**entry.as_json())


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


@router.post(
    "/api/logbook",
    status_code=201,
    dependencies=needs(Access.PIN),
    responses=_WRITE_ERRORS,
    openapi_extra=_body_schema(PinRequest),
)
async def pin(request: Request, service: ServiceDep) -> LogbookEntry:
    """Pin a topic's image (its current one, or version ``seq``) to its experiment's logbook,
    for good: the entry keeps the exact bytes. 404 when that version is no longer kept."""
    check_publish_rate(request, service)
    body = await _body(request, service, PinRequest)
    author = _author(request, body.author)
    current = await service.feed.lookup(body.topic)
    if current is None:
        raise TopicNotFoundError(body.topic)
    kept: TopicImage | None = current
    if body.seq not in (None, current.seq):
        kept = await service.store.history_image(body.topic, body.seq)
    image = check_version(body.topic, body.seq, body.digest, kept)
    return _model(await service.logbook.pin(image, author, body.comment))


@router.get("/api/logbook", dependencies=needs(Access.VIEW), responses={503: {}})
async def experiments(service: ServiceDep) -> list[LogbookSummary]:
    """Every experiment that has a logbook, the most recently pinned first."""
    return [LogbookSummary(**item) for item in await service.logbook.experiments()]


async def _entry(service: Service, experiment: str, entry_id: str) -> Entry:
    entry = await service.logbook.entry(logbook_experiment(experiment), entry_id)
    if entry is None:
        raise HTTPException(404, f"no entry {entry_id} in the logbook of {experiment!r}")
    return entry


@router.head(
    "/api/logbook/{experiment:experiment}/entries/{entry_id:entry_id}/image",
    include_in_schema=False,
    dependencies=needs(Access.VIEW),
)
@router.get(
    "/api/logbook/{experiment:experiment}/entries/{entry_id:entry_id}/image",
    response_class=Response,
    responses={200: IMAGE_CONTENT, 304: {}, 422: {}, **READ_ERRORS},
    dependencies=needs(Access.VIEW),
)
async def entry_image(
    experiment: Experiment,
    entry_id: EntryId,
    request: Request,
    service: ServiceDep,
    max_width: MaxWidth = None,
) -> Response:
    """The exact image an entry pinned (ETag: its SHA-256); ``max_width``: a preview."""
    entry = await _entry(service, experiment, entry_id)
    data = await service.logbook.image(entry)
    image = TopicImage(
        topic=entry.topic,
        experiment=entry.experiment,
        description=entry.description,
        seq=entry.seq,
        updated_at=entry.published_at,
        content_type=entry.content_type,
        digest=entry.digest,
        data=data,
    )
    return await image_response(request, service, image, max_width)


@router.post(
    "/api/logbook/{experiment:experiment}/entries/{entry_id:entry_id}/retract",
    dependencies=needs(Access.PIN),
    responses=_WRITE_ERRORS,
    openapi_extra=_body_schema(RetractRequest),
)
async def retract(
    experiment: Experiment, entry_id: EntryId, request: Request, service: ServiceDep
) -> LogbookEntry:
    """Mark an entry retracted, saying who and why; it stays readable. 409 if it already is."""
    check_publish_rate(request, service)
    body = await _body(request, service, RetractRequest)
    by = _author(request, body.author)
    status = await service.logbook.retract(
        logbook_experiment(experiment), entry_id, by, body.reason
    )
    if status == "missing":
        raise HTTPException(404, f"no entry {entry_id} in the logbook of {experiment!r}")
    if status == "already":
        raise HTTPException(409, f"entry {entry_id} of {experiment!r} is already retracted")
    return _model(await _entry(service, experiment, entry_id))


@router.get(
    "/api/logbook/{experiment:experiment}/entries/{entry_id:entry_id}",
    responses=READ_ERRORS,
    dependencies=needs(Access.VIEW),
)
async def entry(experiment: Experiment, entry_id: EntryId, service: ServiceDep) -> LogbookEntry:
    """One entry of an experiment's logbook."""
    return _model(await _entry(service, experiment, entry_id))


async def _export(
    service: Service,
    experiment: str,
    chunks: AsyncIterator[bytes],
    media_type: str,
    suffix: str,
) -> StreamingResponse:
    # Once streaming starts, an error can only cut the download short: a key of the wrong
    # type (409) or Redis away (503) is answered before, by reading the first entry.
    await service.logbook.page(logbook_experiment(experiment), None, 1, [])
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment)[:80] or "logbook"
    disposition = f"attachment; filename=\"logbook-{name}.{suffix}\"; filename*=UTF-8''" + quote(
        f"logbook-{experiment}.{suffix}", safe=""
    )
    return StreamingResponse(
        chunks, media_type=media_type, headers={"Content-Disposition": disposition}
    )


@router.get(
    "/api/logbook/{experiment:experiment}/export.html",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/html": {}}}, 409: {}, 422: {}, 503: {}},
    dependencies=needs(Access.VIEW),
)
async def export_html(experiment: Experiment, service: ServiceDep) -> StreamingResponse:
    """The experiment's logbook as one self-contained HTML file (images embedded as data:
    URLs, all text escaped, retracted entries marked), streamed."""
    chunks = html_export(service.logbook, experiment)
    return await _export(service, experiment, chunks, "text/html; charset=utf-8", "html")


@router.get(
    "/api/logbook/{experiment:experiment}/export.zip",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}}, 409: {}, 422: {}, 503: {}},
    dependencies=needs(Access.VIEW),
)
async def export_zip(experiment: Experiment, service: ServiceDep) -> StreamingResponse:
    """The experiment's logbook as a ZIP: ``images/<sha256>.<ext>`` and ``entries.json``."""
    chunks = zip_export(service.logbook, experiment)
    return await _export(service, experiment, chunks, "application/zip", "zip")


@router.get(
    "/api/logbook/{experiment:whole_experiment}",
    responses={422: {}, **READ_ERRORS},
    dependencies=needs(Access.VIEW),
)
async def logbook_page(
    experiment: Experiment,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    before: Annotated[
        str | None,
        Query(pattern=f"^{ENTRY_ID.pattern}$", description="entries older than it"),
    ] = None,
    q: Annotated[
        str | None, Query(max_length=1000, description="words to find, in any order")
    ] = None,
) -> LogbookPage:
    """An experiment's entries, newest first, ``limit`` a page; with ``q``, those whose
    comment, topic, author or description hold every word (case-insensitive)."""
    logbook_experiment(experiment)
    page = await service.logbook.page(experiment, before, limit, search_words(q))
    following = None
    if page.next_before is not None:
        query = {"limit": limit, "before": page.next_before, **({"q": q} if q else {})}
        following = f"api/logbook/{quote(experiment, safe='')}?{urlencode(query)}"
    return LogbookPage(
        experiment=experiment, entries=[_model(entry) for entry in page.entries], next=following
    )
