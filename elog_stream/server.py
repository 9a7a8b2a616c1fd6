"""Running the app under uvicorn with the protocols, limits and shutdown this service needs.

HTTP is uvicorn's h11 implementation: httptools buffers request headers without a limit
(a 50 MB header cost 49 MB of RSS and was answered 200), h11 refuses a request head over
``MAX_REQUEST_HEAD_BYTES`` with 400 and closes the connection; measured here, publishing and
serving 1 MB images was no slower through h11. WebSockets are uvicorn's websockets-sansio
implementation (what ``ws="auto"`` picks) with the two repairs in ``ViewerProtocol``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Coroutine, Iterable, Iterator, Sequence
from types import FrameType
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn._types import (
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    WebSocketScope,
)
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import HANDLED_SIGNALS
from websockets.exceptions import InvalidState
from websockets.protocol import State

from .frames import HAND_OVER, SEND_FRAMES, FrameSender
from .mailbox import Flag

log = logging.getLogger(__name__)

MAX_CLIENT_MESSAGE_BYTES = 64 * 1024
MAX_REQUEST_HEAD_BYTES = 16 * 1024  # request line and headers together
REQUEST_HEAD_TIMEOUT = 10.0  # seconds from connecting (or the last response) to a whole head
PING_INTERVAL = 20.0
PING_TIMEOUT = 20.0

# Shutdown ends within SHUTDOWN_TIMEOUT seconds whatever clients do: viewers are told 1001 and
# given VIEWER_CLOSE_TIMEOUT to be gone; those stuck in a send are ended (1012) and given as long
# again; every WebSocket still open is then dropped. uvicorn waits CONNECTIONS_TIMEOUT for HTTP
# requests in progress, then cancels them; the rest is the lifespan's: Feed, Redis client,
# embedded server (embedded.STOP_TIMEOUT, then SIGKILL). 2 + 2 + 3 + ~2 < 10.
SHUTDOWN_TIMEOUT = 10.0
VIEWER_CLOSE_TIMEOUT = 2.0
CONNECTIONS_TIMEOUT = 3


class ViewerProtocol(WebSocketsSansIOProtocol):
    """uvicorn 0.54's websockets-sansio protocol, repaired where this service needs it.

    - A close frame is queued at once, behind data the peer has not read, instead of waiting
      for that data to drain: a stuck viewer is closed (4008) and unregistered on time and
      finds the close frame when it reads again (uvicorn flushes the transport before closing).
    - A ping unanswered while the peer accepts no data does not close the connection with
      1011: the ping sits behind that data, so it measures the backlog, not liveness. Writing
      is paused then, so the app's next send (a heartbeat at the latest) blocks, and the
      slow-viewer timeout closes the connection with 4008.
    - Shutting a connection down twice, or after dropping it, does nothing (uvicorn's own
      ``shutdown`` raises then).
    - A handshake that websockets itself refuses (request line over 8 KiB: 414; too many or
      too long headers: 431; not HTTP) is answered and closed; uvicorn left it hanging, and
      its shutdown then failed with an AssertionError.

    It also offers the app ``send_frames`` and ``try_send_frames`` (the scope extension
    ``frames.SEND_FRAMES``): frames encoded once for all viewers are written as they are,
    without an ASGI message, a frame object and a copy of the image per viewer.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]
        self.writable.set()
        self._app, self.app = self.app, self._run_app
        self._handed_over: Coroutine[Any, Any, None] | None = None

    async def run_asgi(self) -> None:
        sender = FrameSender(send=self.send_frames, try_send=self.try_send_frames)
        self.scope["extensions"][SEND_FRAMES] = sender  # type: ignore[assignment]
        self.scope["extensions"][HAND_OVER] = self._hand_over  # type: ignore[assignment]
        await super().run_asgi()

    async def _run_app(
        self, scope: WebSocketScope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        # The app, then what it handed over (frames.HAND_OVER), in the connection's task.
        try:
            await self._app(scope, receive, send)
        except BaseException:
            if self._handed_over is not None:
                self._handed_over.close()
                self._handed_over = None
            raise
        handed_over, self._handed_over = self._handed_over, None
        if handed_over is not None:
            await handed_over

    def _hand_over(self, coroutine: Coroutine[Any, Any, None]) -> None:
        if self._handed_over is not None:
            coroutine.close()
            raise RuntimeError("the connection was handed over already")
        self._handed_over = coroutine

    async def send_frames(self, frames: Iterable[bytes], timeout: float) -> None:
        """Write whole server frames once the transport takes data, as ``send`` waits, so that
        the sender of a viewer that reads nothing blocks; raises TimeoutError after ``timeout``
        seconds of that (the timer is set only then), ClientDisconnected (an OSError) once the
        connection is closing or closed."""
        if not self.writable.is_set():
            async with asyncio.timeout(timeout):
                await self.writable.wait()
        if not self.try_send_frames(frames):
            raise ClientDisconnected()

    def try_send_frames(self, frames: Iterable[bytes]) -> bool:
        """Write whole server frames if the transport takes data now; else return False (the
        connection is closing, or the peer has not read what it was sent)."""
        if (
            not self.writable.is_set()
            or self.close_sent
            or self.disconnected
            or self.transport.is_closing()
            or self.conn.state is not State.OPEN
        ):
            return False
        self.transport.writelines(frames)
        return True

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == "websocket.close" and self.handshake_complete:
            if self.initial_response is None:
                self._close(message.get("code", 1000), message.get("reason") or "")
                return
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # uvicorn keeps the handshake's request and response, and websockets' parser the
            # request, for the life of the connection: ~3 KB of headers, which the app has in
            # its scope.
            self.request.headers.clear()
            self.request = self.response = None  # type: ignore[assignment]

    def _close(self, code: int, reason: str) -> None:
        if self.close_sent or self.disconnected or self.transport.is_closing():
            return  # already closing: closing again changes nothing
        try:
            self.conn.send_close(code, reason)
        except InvalidState as exc:
            raise ClientDisconnected() from exc
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)

    def keepalive_timeout(self) -> None:
        if self.writable.is_set():
            super().keepalive_timeout()
            return
        self.pong_timer = None
        self.pending_ping_payload = None
        self.schedule_ping()

    def shutdown(self) -> None:
        if not self.transport.is_closing():  # else shut down or dropped already
            super().shutdown()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.handshake_exc is not None and not self.handshake_initiated:
            self.handshake_initiated = self.handshake_complete = self.close_sent = True
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()


class _Inbox:
    """What uvicorn's protocol uses of its asyncio.Queue of received events, without the
    Queue's four deques (~3 KB per connection): it holds an event or two at a time (uvicorn
    stops reading until the app has taken the last message)."""

    __slots__ = ("_events", "_ready")

    def __init__(self) -> None:
        self._events: list[ASGIReceiveEvent] = []
        self._ready = Flag()

    def put_nowait(self, event: ASGIReceiveEvent) -> None:
        self._events.append(event)
        self._ready.set()

    async def get(self) -> ASGIReceiveEvent:
        while not self._events:
            self._ready.clear()
            await self._ready.wait()
        return self._events.pop(0)

    def empty(self) -> bool:
        return not self._events


class ClientProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head.

    uvicorn gives a client that connects and then sends nothing, or a head a byte at a time,
    all the time it wants (measured: 19,950 such connections held 295 MB and every file
    descriptor). Here the head must be complete within ``REQUEST_HEAD_TIMEOUT`` of connecting or
    of the previous response, else the connection is closed. (Head *size* is checked by the app,
    app.HeadLimit: h11 limits only a head that arrives in pieces.)
    """

    head_timeout = REQUEST_HEAD_TIMEOUT
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_timer is not None and self.conn.their_state is not h11.IDLE:
            self._head_timer.cancel()  # a whole head arrived
            self._head_timer = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def _await_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_late)

    def _head_too_late(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


class Server(uvicorn.Server):
    """uvicorn's Server for an app made by ``create_app``.

    No permessage-deflate (PNG does not compress, and deflate cut fan-out to ~26 MB/s here),
    small client messages and request heads, pings to find dead viewers, proxy headers only
    from ``trusted_proxies``. Shutdown is bounded (``SHUTDOWN_TIMEOUT``) and closes viewers
    with 1001 ("going away") first; uvicorn itself would close open WebSockets with 1012.
    After a SIGTERM the process exits 0 once shut down; SIGINT is re-raised as uvicorn does.
    """

    def __init__(
        self,
        app: FastAPI,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        trusted_proxies: Sequence[str] = (),
        request_head_timeout: float = REQUEST_HEAD_TIMEOUT,
        **options: Any,
    ) -> None:
        http = type("ClientProtocol", (ClientProtocol,), {"head_timeout": request_head_timeout})
        options = {
            "http": http,
            "h11_max_incomplete_event_size": MAX_REQUEST_HEAD_BYTES,
            "ws": ViewerProtocol,
            "ws_per_message_deflate": False,
            "ws_max_size": MAX_CLIENT_MESSAGE_BYTES,
            "ws_ping_interval": PING_INTERVAL,
            "ws_ping_timeout": PING_TIMEOUT,
            # uvicorn trusts X-Forwarded-* from 127.0.0.1 unless told otherwise.
            "proxy_headers": bool(trusted_proxies),
            "forwarded_allow_ips": list(trusted_proxies),
            "timeout_graceful_shutdown": CONNECTIONS_TIMEOUT,
            **options,
        }
        super().__init__(uvicorn.Config(app, host=host, port=port, **options))
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        service = getattr(self.app.state, "service", None)
        if service is not None:
            left = await service.hub.close_viewers(VIEWER_CLOSE_TIMEOUT)
            if left:
                # Their handlers wait to send to viewers that read nothing: uvicorn's shutdown
                # of a connection (close frame 1012, a disconnect event) ends them.
                log.warning("%d viewers did not disconnect in time; dropping them", left)
                for connection in self._websockets():
                    connection.shutdown()
                await service.hub.close_viewers(VIEWER_CLOSE_TIMEOUT)
        for connection in self._websockets():  # their close frame is still unread: drop them
            connection.transport.abort()
        await super().shutdown(sockets)

    def _websockets(self) -> list[ViewerProtocol]:
        return [c for c in self.server_state.connections if isinstance(c, ViewerProtocol)]

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises every signal it caught once shut down, so SIGTERM would end the
        # process by that signal; service managers send SIGTERM to stop a service, and a clean
        # stop then exits 0. SIGINT ends in KeyboardInterrupt (exit status 130), raised here:
        # re-sent, asyncio's runner turns it into a cancellation of the main task, which a task
        # finishing at that moment never sees, and the process exited 0 (seen in a full run).
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        caught: list[int] = []

        def handle(sig: int, frame: FrameType | None) -> None:
            caught.append(sig)
            self.handle_exit(sig, frame)

        previous = {sig: signal.signal(sig, handle) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if signal.SIGINT in caught:
            raise KeyboardInterrupt
        for number in reversed(caught):
            if number != signal.SIGTERM:
                signal.raise_signal(number)
