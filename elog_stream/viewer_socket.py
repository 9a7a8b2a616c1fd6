"""``WS /ws``: push every matching image to one viewer, as docs/protocol.md describes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Query, WebSocket

from .hub import Close, Expired, Filter, Hub, Viewer
from .records import TopicImage
from .service import Service

log = logging.getLogger(__name__)

router = APIRouter()

CLOSE_TOO_SLOW = 4008
CLOSE_WAIT = 60.0
MAX_HAVE = 10_000
HEARTBEAT_INTERVAL = 15.0


@router.websocket("/ws")
async def viewer_socket(
    websocket: WebSocket,
    topic: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies defaults
    experiment: Annotated[list[str], Query()] = [],  # noqa: B006
    resume: bool = False,
) -> None:
    service: Service = websocket.app.state.service
    await websocket.accept()
    try:
        filter = Filter.parse(topic, experiment)
    except ValueError as exc:
        await websocket.close(code=1008, reason=str(exc)[:120])
        return
    # Resuming, the client first says what it holds; nothing is sent before that.
    with service.hub.connect(filter, snapshot=not resume) as (viewer, names):
        if not resume:
            viewer.say({"type": "sync", "topics": names})
        kind, detail = await _first_to_finish(
            _send(websocket, viewer, service.settings.slow_viewer_timeout),
            _receive(websocket, viewer, service.hub),
        )
    service.stats.viewer_disconnects[kind] += 1
    log.info(
        "viewer disconnected: reason=%s detail=%r superseded=%d viewers=%d",
        kind,
        detail,
        viewer.dropped,
        service.hub.viewer_count,
    )


Reason = tuple[str, str]  # (kind, detail); kinds are counted in Stats.viewer_disconnects


async def _first_to_finish(*coroutines: Coroutine[Any, Any, Reason]) -> Reason:
    """Run the sender and reader until one ends; cancel and await the other.

    Returns why the first one ended (its result, or ``("error", ...)`` for its exception);
    if both ended together, the earlier-listed one's reason wins.
    """
    tasks = [asyncio.create_task(coroutine) for coroutine in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
    first = next(task for task in tasks if task in done)
    error = first.exception()
    return first.result() if error is None else ("error", f"{type(error).__name__}: {error}")


async def _receive(websocket: WebSocket, viewer: Viewer, hub: Hub) -> Reason:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return "client_closed", f"code {message.get('code')}"
        text = message.get("text")
        if text is None:
            viewer.say({"type": "error", "message": "binary messages are not understood"})
            continue
        try:
            request = json.loads(text)
            if not isinstance(request, dict) or request.get("type") != "subscribe":
                raise ValueError('expected {"type": "subscribe", "topics": [...], ...}')
            filter = Filter.parse(request.get("topics"), request.get("experiments"))
            have = _parse_have(request.get("have"))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            viewer.say({"type": "error", "message": f"bad message: {exc}"})
            continue
        names = viewer.refilter(filter, hub.images(), have)
        viewer.say({"type": "sync", "topics": names})


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


async def _send(websocket: WebSocket, viewer: Viewer, timeout: float) -> Reason:
    while True:
        try:
            async with asyncio.timeout(HEARTBEAT_INTERVAL):
                item = await viewer.next()
        except TimeoutError:  # lets the viewer tell a quiet connection from a dead one
            item = {"type": "heartbeat"}
        try:
            async with asyncio.timeout(timeout):
                if isinstance(item, TopicImage):
                    await websocket.send_text(_frame({"type": "image", **item.metadata()}))
                    await websocket.send_bytes(item.data)
                elif isinstance(item, Expired):
                    await websocket.send_text(_frame({"type": "expired", "topic": item.topic}))
                elif isinstance(item, Close):
                    await websocket.close(code=item.code, reason=item.reason)
                    return "server_closed", item.reason
                else:
                    await websocket.send_text(_frame(item))
        except TimeoutError:
            reason = f"viewer too slow: a frame was not accepted within {timeout:g} s"
            # The close frame goes out once the viewer reads again; give up on it after a while
            # (its memory is bounded either way: one frame in the transport buffer).
            with contextlib.suppress(TimeoutError, OSError, RuntimeError):
                async with asyncio.timeout(CLOSE_WAIT):
                    await websocket.close(code=CLOSE_TOO_SLOW, reason=reason)
            return "too_slow", reason


def _frame(message: dict[str, Any]) -> str:
    # Strict JSON: a NaN or Infinity would make browsers' JSON.parse drop the frame.
    return json.dumps(message, allow_nan=False)
