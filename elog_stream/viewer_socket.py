"""``WS /ws``: push every matching image to one viewer, as docs/protocol.md describes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from .auth import Access, needs
from .frames import HAND_OVER, SEND_FRAMES, FrameSender, message, text_frame
from .hub import Close, Expired, Filter, Hub, Viewer
from .ratelimit import RateLimiter
from .records import TopicImage
from .service import Service

log = logging.getLogger(__name__)


router = APIRouter()

CLOSE_TOO_SLOW = 4008
# Under server.Server a close frame is queued behind unread data at once; an ASGI server that
# waits for that data to drain is given up on after CLOSE_WAIT, so that a stuck viewer is
# unregistered within its timeout plus CLOSE_WAIT whatever runs the app.
CLOSE_WAIT = 1.0
MAX_HAVE = 10_000
# Client messages per second per connection, in bursts of MESSAGE_BURST; beyond, each is refused
# with an error frame, and a client that goes on (more than FLOOD_ALLOWANCE refused, regained at
# MESSAGE_RATE per second) is closed with CLOSE_FLOODING.
MESSAGE_RATE = 5.0
MESSAGE_BURST = 10
FLOOD_ALLOWANCE = 50
CLOSE_FLOODING = 1008
CLOSE_INTERNAL_ERROR = 1011
HEARTBEAT_INTERVAL = 15.0
LOAD_WAIT = 5.0  # longest a viewer of a service that has just started waits for its first load
# How images reach the viewer: "bytes" (the header, then a binary frame) or "announce" (the
# header alone, with "bytes": false; the viewer fetches a preview or the image over HTTP).
IMAGE_MODES = ("bytes", "announce")


@router.websocket("/ws", dependencies=needs(Access.VIEW))
async def viewer_socket(
    websocket: WebSocket,
    topic: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies defaults
    experiment: Annotated[list[str], Query()] = [],  # noqa: B006
    resume: bool = False,
    images: str = "bytes",
) -> None:
    service: Service = websocket.app.state.service
    extensions = websocket.scope.get("extensions") or {}
    sender: FrameSender | None = extensions.get(SEND_FRAMES)
    await websocket.accept()
    if sender is None:
        log.error("/ws needs the %s extension: serve the app with server.Server", SEND_FRAMES)
        await websocket.close(code=CLOSE_INTERNAL_ERROR, reason="internal error")
        return
    try:
        filter = Filter.parse(topic, experiment)
        announce = _parse_images(images) == "announce"
    except ValueError as exc:
        await websocket.close(code=1008, reason=str(exc)[:120])
        return
    serving = _serve(websocket, service, sender, filter, announce=announce, resume=resume)
    hand_over = extensions.get(HAND_OVER)
    if hand_over is None:
        await serving
    else:  # served after this returns, without the frames of the ASGI stack above
        # FastAPI leaves its exit stacks (~800 B each) in the scope, which outlives them: each
        # is held by its ``async with`` until it is closed, as this returns.
        scope = websocket.scope
        for key in [key for key, value in scope.items() if _is_exit_stack(value)]:
            del scope[key]
        hand_over(serving)


def _is_exit_stack(value: object) -> bool:
    return isinstance(value, contextlib.AsyncExitStack)


async def _serve(
    websocket: WebSocket,
    service: Service,
    sender: FrameSender,
    filter: Filter,
    *,
    announce: bool,
    resume: bool,
) -> None:
    """Serve an accepted viewer until it or the server closes the connection."""
    # A service that has just started first loads what Redis holds, so that a snapshot is
    # whole and a resuming client's `have` names topics the Hub knows (bounded wait: Redis
    # may be down, and viewers are then served what there is).
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(LOAD_WAIT):
            await service.feed.loaded.wait()
    # Resuming, the client first says what it holds; nothing is sent before that.
    with service.hub.connect(filter, snapshot=not resume) as (viewer, names):
        viewer.announce = announce
        if not resume:
            viewer.say({"type": "sync", "topics": names})
        kind, detail = await _first_to_finish(  # the sender in this task, the reader in a child
            _send(sender, websocket, viewer, service.settings.slow_viewer_timeout),
            _receive(websocket, viewer, service.hub),
        )
    if kind == "error":
        await _close_if_open(websocket, CLOSE_INTERNAL_ERROR, "internal error")
    elif kind == "flooding":
        await _close_if_open(websocket, CLOSE_FLOODING, detail)
    service.stats.viewer_disconnected(kind)
    log.info(
        "viewer disconnected: reason=%s detail=%r superseded=%d viewers=%d",
        kind,
        detail,
        viewer.dropped,
        service.hub.viewer_count,
    )


Reason = tuple[str, str]  # (kind, detail); kinds are counted by Stats.viewer_disconnected


async def _first_to_finish(
    here: Coroutine[Any, Any, Reason], there: Coroutine[Any, Any, Reason]
) -> Reason:
    """Run ``here`` in this task and ``there`` in a child task until one ends; stop the other.

    Tasks: the calling task (the connection's own) runs ``here``; the one child task, which
    runs ``there``, is owned by this call: cancelled and awaited before it returns or raises,
    whatever happens. If ``there`` ends first, ``here`` is stopped by ``asyncio.timeout``, which
    cancels this task and takes that cancellation back (``uncancel``) as it leaves, so a
    cancellation from outside (server shutdown, uvicorn) is never mistaken for it: it
    propagates, once the child is cancelled and awaited. ``here`` must let CancelledError
    through. (A task for each, and ``asyncio.wait`` over them, cost 1.7 KB more per idle
    viewer: docs/benchmarks.md.)

    Returns why the first one ended: its result; ``("client_closed", ...)`` if it failed because
    the client went away; else ``("error", ...)``, its exception logged with the traceback. If
    both ended together, ``here``'s reason wins.
    """
    child = asyncio.create_task(there)
    stop = asyncio.timeout(None)  # expired by the child's end, while ``here`` runs
    running = True

    def stop_here(_: object) -> None:
        if running:
            stop.reschedule(asyncio.get_running_loop().time())

    try:
        async with stop:
            child.add_done_callback(stop_here)
            try:
                return await here
            finally:
                running = False
    except Exception as error:
        if stop.expired():  # ``there`` ended first (``error`` is the TimeoutError of ``stop``)
            return _reason(child)
        return _failed(error)
    finally:
        child.cancel()
        await asyncio.wait((child,))


def _reason(task: asyncio.Task[Reason]) -> Reason:
    error = task.exception()
    return task.result() if error is None else _failed(error)


def _failed(error: BaseException) -> Reason:
    if isinstance(error, WebSocketDisconnect):  # a frame was being sent as the client left
        return "client_closed", f"code {error.code}"
    log.error("viewer socket failed", exc_info=error)
    return "error", f"{type(error).__name__}: {error}"


async def _close_if_open(websocket: WebSocket, code: int, reason: str) -> None:
    """Close the socket with ``code`` unless it is closed; give up after CLOSE_WAIT seconds."""
    if websocket.application_state != WebSocketState.CONNECTED:
        return
    with contextlib.suppress(TimeoutError, OSError, RuntimeError, WebSocketDisconnect):
        async with asyncio.timeout(CLOSE_WAIT):
            await websocket.close(code=code, reason=reason)


async def _receive(websocket: WebSocket, viewer: Viewer, hub: Hub) -> Reason:
    """Answer each client message with ``sync`` or ``error`` until the client closes or floods.

    A flood returns ``("flooding", ...)``; closing the socket is left to the caller.
    """
    allowed = RateLimiter(MESSAGE_RATE, MESSAGE_BURST, max_keys=1)
    refusable = RateLimiter(MESSAGE_RATE, FLOOD_ALLOWANCE, max_keys=1)
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return "client_closed", f"code {message.get('code')}"
        # Before parsing, so that a message over the limit costs no more than reading it.
        wait = allowed.retry_after("")
        if wait:
            if refusable.retry_after(""):
                return "flooding", f"over {MESSAGE_RATE:g} messages per second for too long"
            viewer.say({"type": "error", "message": _rate_limited(wait)})
            continue
        try:
            filter, have, images = _parse_subscribe(message.get("text"))
        except ValueError as exc:
            viewer.say({"type": "error", "message": f"bad message: {exc}"})
            continue
        if images is not None:  # absent: the mode stays as it is
            viewer.announce = images == "announce"
        names = viewer.refilter(filter, hub.images(), have)
        viewer.say({"type": "sync", "topics": names})


def _rate_limited(wait: float) -> str:
    return (
        f"rate limit: at most {MESSAGE_RATE:g} messages per second in bursts of {MESSAGE_BURST};"
        f" message ignored, try again in {wait:.1f} s"
    )


def _parse_subscribe(text: str | None) -> tuple[Filter, dict[str, int], str | None]:
    """The filter, ``have`` and ``images`` mode (None if absent) of a subscribe message; raise
    ValueError saying what is wrong."""
    if text is None:
        raise ValueError("binary messages are not understood")
    try:
        request = json.loads(text)  # json.JSONDecodeError is a ValueError
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(request, dict) or request.get("type") != "subscribe":
        raise ValueError('expected {"type": "subscribe", "topics": [...], ...}')
    filter = Filter.parse(request.get("topics"), request.get("experiments"))
    images = request.get("images")
    return (
        filter,
        _parse_have(request.get("have")),
        None if images is None else _parse_images(images),
    )


def _parse_images(images: object) -> str:
    if images not in IMAGE_MODES:
        raise ValueError(f"images must be one of {', '.join(map(repr, IMAGE_MODES))}")
    return str(images)


def _parse_have(have: object) -> dict[str, int]:
    if have is None:
        return {}
    if (
        not isinstance(have, dict)
        or len(have) > MAX_HAVE
        or not all(isinstance(seq, int) and not isinstance(seq, bool) for seq in have.values())
    ):
        raise ValueError(f"have must map at most {MAX_HAVE} topics to their seq numbers")
    return have


async def _send(
    sender: FrameSender, websocket: WebSocket, viewer: Viewer, timeout: float
) -> Reason:
    send_frames, try_send_frames = sender["send"], sender["try_send"]
    heartbeat = _Heartbeat(viewer)

    def direct(image: TopicImage) -> bool:
        # Called by Hub.update for every viewer: nothing may escape from one of them.
        frames = image.frames.announced if viewer.announce else image.frames.with_bytes
        try:
            written = try_send_frames(frames)
        except Exception:  # the sender meets it again with the queued image, and closes 1011
            log.exception("writing an image directly failed")
            return False
        if written:
            heartbeat.sent()
        return written

    try:
        while True:
            item = await viewer.next(direct)
            if isinstance(item, Close):
                await websocket.close(code=item.code, reason=item.reason)
                return "server_closed", item.reason
            announce = viewer.announce
            if isinstance(item, TopicImage):
                frames = item.frames.announced if announce else item.frames.with_bytes
            elif isinstance(item, Expired):
                frames = (text_frame(message({"type": "expired", "topic": item.topic})),)
            else:
                frames = (text_frame(message(item)),)
            heartbeat.sending = True
            try:
                await send_frames(frames, timeout)
            except TimeoutError:
                reason = f"viewer too slow: a frame was not accepted within {timeout:g} s"
                # The viewer finds the close frame when it reads again, after the frames still
                # in the transport buffer (at most one image); it is unregistered now.
                with contextlib.suppress(TimeoutError, OSError, RuntimeError):
                    async with asyncio.timeout(CLOSE_WAIT):
                        await websocket.close(code=CLOSE_TOO_SLOW, reason=reason)
                return "too_slow", reason
            except OSError:  # closed, as Starlette's own send says it
                raise WebSocketDisconnect(code=1006) from None
            heartbeat.sent()
            if isinstance(item, TopicImage):
                viewer.sent(item, with_bytes=not announce)
    finally:
        heartbeat.cancel()


class _Heartbeat:
    """Says ``{"type": "heartbeat"}`` to a viewer sent nothing for HEARTBEAT_INTERVAL seconds,
    so that it can tell a quiet connection from a dead one.

    One timer per connection, moved on only when it fires: a timeout around each wait for the
    next frame cost about 20 µs per frame per viewer on a loaded 2-core machine.
    """

    def __init__(self, viewer: Viewer) -> None:
        self.sending = False  # set while a send is in progress: the connection is not quiet
        self._viewer = viewer
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._timer = self._loop.call_later(HEARTBEAT_INTERVAL, self._check)

    def sent(self) -> None:
        self.sending = False
        self._last = self._loop.time()

    def cancel(self) -> None:
        self._timer.cancel()

    def _check(self) -> None:
        now = self._loop.time()
        due = self._last + HEARTBEAT_INTERVAL
        if self.sending:  # it ends sent or closed with 4008
            due = now + HEARTBEAT_INTERVAL
        elif now >= due:
            self._viewer.say({"type": "heartbeat"})
            self._last, due = now, now + HEARTBEAT_INTERVAL
        self._timer = self._loop.call_at(due, self._check)
