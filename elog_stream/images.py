"""Turn what a publisher hands us (a figure, bytes, a path) into checked image bytes."""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Any

from .errors import ImageTooLargeError, InvalidImageError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DEFAULT_MAX_IMAGE_BYTES = 20 * 1024 * 1024

# Magic bytes of the accepted types; anything else (SVG, PDF, text, ...) is refused.
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
CONTENT_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")


def sniff_content_type(data: bytes) -> str:
    """Return the MIME type of ``data`` from its magic bytes.

    Raises InvalidImageError when ``data`` is empty or not a PNG, JPEG, WebP or GIF.
    """
    if not data:
        raise InvalidImageError("image is empty")
    for signature, content_type in _SIGNATURES:
        if data.startswith(signature):
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    kind = " (it looks like SVG, which can carry scripts)" if b"<svg" in data[:1024] else ""
    raise InvalidImageError(
        f"image is not a PNG, JPEG, WebP or GIF{kind}: it starts with {bytes(data[:8])!r}"
    )


def check_image(data: bytes, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> str:
    """Check size and type of ``data``; return its content type.

    Raises ImageTooLargeError over ``max_bytes``, InvalidImageError for any other type.
    """
    if len(data) > max_bytes:
        raise ImageTooLargeError(len(data), max_bytes)
    return sniff_content_type(data)


def figure_to_png(figure: Figure | None = None) -> bytes:
    """Render ``figure`` (the current pyplot figure when None) as PNG bytes."""
    buffer = io.BytesIO()
    if figure is None:
        from matplotlib import pyplot

        pyplot.savefig(buffer, format="png")
    else:
        figure.savefig(buffer, format="png")
    return buffer.getvalue()


def image_bytes(image: Any) -> bytes:
    """Return the bytes of a matplotlib Figure, a bytes-like object or an image file path.

    Raises TypeError for anything else and OSError when a path cannot be read.
    """
    if isinstance(image, bytes | bytearray | memoryview):
        return bytes(image)
    if isinstance(image, str | os.PathLike):
        with open(image, "rb") as file:
            return file.read()
    if hasattr(image, "savefig"):
        return figure_to_png(image)
    raise TypeError(
        "image must be a matplotlib Figure, PNG/JPEG/WebP/GIF bytes or a file path, "
        f"not {type(image).__name__}"
    )
