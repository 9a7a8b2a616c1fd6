"""The viewer socket's frames (docs/protocol.md), encoded as RFC 6455 bytes once and shared.

An image's frames are encoded once per image, on first use, and the same bytes objects are then
written to every viewer's connection, instead of a JSON header and a frame per viewer. The
server (``server.ViewerProtocol``) offers the app a way to write such frames under the ASGI
scope's extension ``SEND_FRAMES``: ``{"send": coroutine function (frames, timeout), "try_send":
function (frames) -> bool}``. Both write whole server frames (unmasked, no extension: the server
negotiates none). ``send`` waits, as an ASGI send does, until the connection takes data
(TimeoutError after ``timeout`` seconds) and raises OSError once it is closing; ``try_send``
never waits: it returns False unless it wrote the frames.

The server also offers ``HAND_OVER``: a function that takes a coroutine, which the server runs
in the connection's task once the app has returned, instead of closing the connection then.
The app hands over what it does for the rest of the connection, and the frames of the ASGI
stack above it (middleware, routing, dependencies: ~10 KB per connection) are freed meanwhile.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from .records import TopicImage

SEND_FRAMES = "elog.send_frames"
HAND_OVER = "elog.hand_over"


class FrameSender(TypedDict):
    """The value of the ``SEND_FRAMES`` extension."""

    send: Callable[[Iterable[bytes], float], Awaitable[None]]
    try_send: Callable[[Iterable[bytes]], bool]


_FIN = 0x80
_TEXT = 0x1
_BINARY = 0x2


def message(body: Mapping[str, object]) -> str:
    """``body`` as the text of a frame: strict JSON, since a NaN or Infinity would make
    browsers' ``JSON.parse`` drop the frame (raises ValueError)."""
    return json.dumps(body, allow_nan=False)


def text_frame(text: str) -> bytes:
    """A whole text frame holding ``text``."""
    payload = text.encode()
    return _head(_TEXT, len(payload)) + payload


def _head(opcode: int, length: int) -> bytes:
    # RFC 6455 section 5.2: FIN and opcode, then the length in 7, 7+16 or 7+64 bits; no mask.
    if length < 126:
        return struct.pack("!BB", _FIN | opcode, length)
    if length < 1 << 16:
        return struct.pack("!BBH", _FIN | opcode, 126, length)
    return struct.pack("!BBQ", _FIN | opcode, 127, length)


class ImageFrames:
    """The frames that carry an image to a viewer: its ``image`` header and binary frame
    (``with_bytes``), or the header alone with ``"bytes": false`` (``announced``).

    Each is a tuple of bytes objects to write in order; the image's data is one of them, not
    copied. Immutable; built by ``TopicImage.frames``.
    """

    __slots__ = ("announced", "with_bytes")

    def __init__(self, image: TopicImage) -> None:
        header = {"type": "image", **image.metadata()}
        self.with_bytes = (
            text_frame(message(header)) + _head(_BINARY, len(image.data)),
            image.data,
        )
        self.announced = (text_frame(message({**header, "bytes": False})),)
