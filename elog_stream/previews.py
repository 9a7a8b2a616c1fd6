"""Downscaled previews of images, made off the event loop and cached per (digest, width).

``Previews`` is the service's one owner of preview work: it owns a pool of ``MAX_JOBS`` threads,
so at most that many decodes run at a time whatever clients do (a request that is cancelled
while its job waits drops the job; a running one finishes), requests for a preview being made
wait for it rather than making it again, and results are kept in a least-recently-used cache
bounded in bytes. Images are untrusted: a header that claims more than ``MAX_PIXELS`` pixels is
refused before anything is decoded (``Image.open`` reads only the header).
"""

from __future__ import annotations

import asyncio
import io
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from PIL import Image

from .records import TopicImage
from .stats import Stats

MIN_WIDTH = 16
MAX_WIDTH = 4096
MAX_JOBS = 2  # decodes at once, so previews cannot take every core from the service
# A decoded image holds up to 4 bytes per pixel: 40 Mpx (e.g. 7300 x 5500) is 160 MB per job.
MAX_PIXELS = 40_000_000
# A PNG preview of more bytes per pixel than this is photo-like: sent as JPEG when opaque.
PHOTO_BYTES_PER_PIXEL = 0.75
JPEG_QUALITY = 85
_ENTRY_OVERHEAD = 200  # bytes a cache entry costs besides its image


class PreviewRefusedError(ValueError):
    """The image cannot be previewed (too many pixels, or undecodable); ``str`` says why."""


@dataclass(frozen=True, slots=True)
class Preview:
    """A preview's bytes and type; ``data is None`` means the original is no wider: serve it."""

    data: bytes | None
    content_type: str

    @property
    def cost(self) -> int:
        return _ENTRY_OVERHEAD + (len(self.data) if self.data is not None else 0)


class Previews:
    """Previews of at most ``width`` pixels wide, aspect kept, never upscaled.

    Used from the event loop only; the decoding runs in the pool's threads. ``cache_bytes``
    bounds the cached previews' bytes together (0: nothing is cached). ``close()`` stops the
    pool (jobs not started are dropped); the service calls it on exit.
    """

    def __init__(self, stats: Stats, cache_bytes: int) -> None:
        self._stats = stats
        self._budget = cache_bytes
        self._bytes = 0
        self._cache: OrderedDict[tuple[str, int], Preview] = OrderedDict()
        self._making: dict[tuple[str, int], asyncio.Event] = {}
        self._pool = ThreadPoolExecutor(MAX_JOBS, thread_name_prefix="elog-preview")
        stats.watch_previews(lambda: self._bytes)

    def close(self) -> None:
        """Drop the jobs not started; those running end on their own (within a decode)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def get(self, image: TopicImage, width: int) -> Preview:
        """The preview of ``image`` at most ``width`` pixels wide.

        Raises ValueError for a width out of ``MIN_WIDTH..MAX_WIDTH`` and PreviewRefusedError
        for an image that cannot be previewed. Cancelling is safe: a job not started yet is
        dropped, and one that runs finishes in its thread unused.
        """
        if not MIN_WIDTH <= width <= MAX_WIDTH:
            raise ValueError(f"width must be from {MIN_WIDTH} to {MAX_WIDTH}, not {width}")
        key = (image.digest, width)
        while True:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                self._stats.preview_cache_hit()
                return cached
            making = self._making.get(key)
            if making is None:
                break
            await making.wait()  # then look again: it may have failed, or not fit the cache
        self._making[key] = done = asyncio.Event()
        try:
            loop = asyncio.get_running_loop()
            preview = await loop.run_in_executor(
                self._pool, make_preview, image.data, image.content_type, width
            )
        except PreviewRefusedError:
            self._stats.preview_refused()
            raise
        finally:
            del self._making[key]
            done.set()
        self._stats.preview_made()
        self._store(key, preview)
        return preview

    def _store(self, key: tuple[str, int], preview: Preview) -> None:
        if preview.cost > self._budget:
            return
        self._cache[key] = preview
        self._bytes += preview.cost
        while self._bytes > self._budget:
            _, evicted = self._cache.popitem(last=False)
            self._bytes -= evicted.cost


def make_preview(data: bytes, content_type: str, width: int) -> Preview:
    """Scale ``data`` down to ``width`` pixels wide (blocking; any thread).

    JPEG stays JPEG (decoded at a reduced size with ``draft``), WebP stays WebP, PNG and GIF
    (first frame) become PNG, or JPEG when the PNG comes out photo-like and has no alpha.
    Raises PreviewRefusedError over ``MAX_PIXELS`` (checked before decoding) or when the
    image does not decode.
    """
    try:
        source = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PreviewRefusedError(f"no preview: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise PreviewRefusedError(f"no preview: the image does not decode ({exc})") from None
    with source:
        w, h = source.size
        if w * h > MAX_PIXELS:
            raise PreviewRefusedError(
                f"no preview: the image is {w}x{h} pixels, over the {MAX_PIXELS:,} a preview "
                "is made of; fetch it without max_width"
            )
        if w <= width:
            return Preview(None, content_type)
        height = max(1, round(h * width / w))
        try:
            if source.format == "JPEG":
                source.draft("RGB", (width, height))  # decodes at 1/2, 1/4 or 1/8 scale
            source.load()
            frame = source if source.mode in ("RGB", "RGBA", "L", "LA") else _converted(source)
            small = frame.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise PreviewRefusedError(f"no preview: the image does not decode ({exc})") from None
    if content_type == "image/jpeg":
        return Preview(_encode(small, "JPEG"), "image/jpeg")
    if content_type == "image/webp":
        return Preview(_encode(small, "WEBP"), "image/webp")
    png = _encode(small, "PNG")
    if "A" not in small.mode and len(png) > PHOTO_BYTES_PER_PIXEL * width * height:
        jpeg = _encode(small, "JPEG")
        if len(jpeg) < len(png):
            return Preview(jpeg, "image/jpeg")
    return Preview(png, "image/png")


def _converted(image: Image.Image) -> Image.Image:
    """Palette, 16-bit, CMYK... as RGB(A), so it scales with a good filter."""
    alpha = "transparency" in image.info or image.mode.endswith("A")
    return image.convert("RGBA" if alpha else "RGB")


def _encode(image: Image.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    if format == "JPEG":
        image.convert("RGB").save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True)
    elif format == "WEBP":
        image.save(buffer, "WEBP", quality=JPEG_QUALITY)
    else:
        image.save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()
