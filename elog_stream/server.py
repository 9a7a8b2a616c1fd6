"""Running the app under uvicorn with the settings this service needs."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

MAX_CLIENT_MESSAGE_BYTES = 64 * 1024


def uvicorn_config(
    app: FastAPI, host: str = "127.0.0.1", port: int = 8000, **kwargs: object
) -> uvicorn.Config:
    """A uvicorn Config for ``app``: no permessage-deflate (PNG does not compress, and deflate
    cut fan-out to ~26 MB/s here), small client messages, pings to find dead viewers."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ws_per_message_deflate=False,
        ws_max_size=MAX_CLIENT_MESSAGE_BYTES,
        ws_ping_interval=20,
        ws_ping_timeout=20,
        **kwargs,  # type: ignore[arg-type]
    )
