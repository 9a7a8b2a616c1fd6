"""Running the app under uvicorn with the settings and shutdown this service needs."""

from __future__ import annotations

import logging
import socket
from typing import Any

import uvicorn
from fastapi import FastAPI

log = logging.getLogger(__name__)

MAX_CLIENT_MESSAGE_BYTES = 64 * 1024
VIEWER_CLOSE_TIMEOUT = 5.0


class Server(uvicorn.Server):
    """uvicorn's Server for an app made by ``create_app``.

    No permessage-deflate (PNG does not compress, and deflate cut fan-out to ~26 MB/s here),
    small client messages, pings to find dead viewers. On shutdown it closes viewers with 1001
    ("going away") first; uvicorn itself would close open WebSockets with 1012.
    """

    def __init__(
        self, app: FastAPI, host: str = "127.0.0.1", port: int = 8000, **options: Any
    ) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            ws_per_message_deflate=False,
            ws_max_size=MAX_CLIENT_MESSAGE_BYTES,
            ws_ping_interval=20,
            ws_ping_timeout=20,
            **options,
        )
        super().__init__(config)
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        service = getattr(self.app.state, "service", None)
        if service is not None:
            left = await service.hub.close_viewers(VIEWER_CLOSE_TIMEOUT)
            if left:
                log.warning("%d viewers did not disconnect in time", left)
        await super().shutdown(sockets)
