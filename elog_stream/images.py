"""Turn what a publisher hands us into checked image bytes.

Accepted: a matplotlib Figure, a numpy array (2-D data drawn with a colormap like ``imshow``,
or H×W×3/4 RGB(A)), a PIL image, encoded PNG/JPEG/WebP/GIF bytes, or a path to such a file.
It happens in two steps so that a caller's thread pays only the cheap one: ``capture`` takes a
private copy of the pixels (drawing a figure), ``encode`` turns it into bytes (colormap,
compression) and may run in another thread. ``image_bytes`` does both.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .colormap import colored
from .errors import ImageTooLargeError, InvalidImageError

if TYPE_CHECKING:
    import numpy
    from matplotlib.figure import Figure

DEFAULT_MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_SIDE = 32_768  # pixels: what every browser decodes
Format = Literal["png", "jpeg", "webp"]
FORMATS: tuple[Format, ...] = ("png", "jpeg", "webp")

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


@dataclass(frozen=True, slots=True)
class Encoding:
    """How pixels become bytes. Encoded bytes and files are published as they are.

    ``format``: png (default), jpeg or webp. ``compress_level``: PNG zlib level 0-9 (default
    6; 1 encodes about twice as fast, a little larger). ``quality``: JPEG/WebP 1-100 (default
    90). ``cmap``, ``vmin``, ``vmax``: how a 2-D array is coloured, as in ``imshow`` (default
    colormap ``image.cmap``, limits the data's finite minimum and maximum). Raises ValueError
    for values out of range.
    """

    format: Format = "png"
    compress_level: int | None = None
    quality: int | None = None
    cmap: str | None = None
    vmin: float | None = None
    vmax: float | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {self.format!r}")
        if self.compress_level is not None:
            if self.format != "png":
                raise ValueError("compress_level applies to format='png' only; use quality")
            _check_int("compress_level", self.compress_level, 0, 9)
        if self.quality is not None:
            if self.format == "png":
                raise ValueError("quality applies to jpeg and webp; use compress_level for png")
            _check_int("quality", self.quality, 1, 100)
        if self.cmap is not None:
            from matplotlib import colormaps

            if self.cmap not in colormaps:
                raise ValueError(f"cmap {self.cmap!r} is not a matplotlib colormap")
        if self.vmin is not None and self.vmax is not None and not self.vmin < self.vmax:
            raise ValueError(f"vmin ({self.vmin}) must be less than vmax ({self.vmax})")

    @property
    def is_default(self) -> bool:
        return self == _DEFAULT


_DEFAULT = Encoding()


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, not {value!r}")


@dataclass(frozen=True, slots=True)
class Captured:
    """A private copy of an image: encoded ``data``, or ``pixels`` still to encode."""

    data: bytes | None = None
    pixels: Any = None  # numpy array: H×W data to colour, or H×W×3/4 uint8; or a PIL image


def capture(image: Any, encoding: Encoding = _DEFAULT) -> Captured:
    """Copy what ``image`` shows now, cheaply; the caller may change it afterwards.

    Raises TypeError for an unsupported type, InvalidImageError for an unusable array, ValueError
    for encoding options given with already encoded bytes, OSError when a path cannot be read.
    """
    if isinstance(image, bytes | bytearray | memoryview | str | os.PathLike):
        if not encoding.is_default:
            raise ValueError(
                "encoding options apply to figures, arrays and PIL images; "
                "encoded bytes and files are published as they are"
            )
        if isinstance(image, str | os.PathLike):
            with open(image, "rb") as file:
                return Captured(data=file.read())
        return Captured(data=bytes(image))
    if hasattr(image, "savefig"):
        return _capture_figure(image)
    if hasattr(image, "__array_interface__") and hasattr(image, "dtype"):
        return Captured(pixels=_checked_array(image).copy())
    if _is_pil_image(image):
        return Captured(pixels=image.copy())
    raise TypeError(
        "image must be a matplotlib Figure, a numpy array, a PIL image, PNG/JPEG/WebP/GIF "
        f"bytes or a file path, not {type(image).__name__}"
    )


def encode(captured: Captured, encoding: Encoding = _DEFAULT) -> bytes:
    """The bytes of a captured image, encoded as ``encoding`` says. May run in any thread."""
    if captured.data is not None:
        return captured.data
    from PIL import Image

    pixels = captured.pixels
    picture = pixels if isinstance(pixels, Image.Image) else _to_pil(pixels, encoding)
    return _save(picture, encoding)


def image_bytes(image: Any, encoding: Encoding = _DEFAULT) -> bytes:
    """``encode(capture(image))``: the image bytes of anything ``capture`` accepts."""
    return encode(capture(image, encoding), encoding)


def _capture_figure(figure: Figure) -> Captured:
    import numpy
    from matplotlib.backend_bases import FigureCanvasBase
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = figure.canvas
    if type(canvas) is FigureCanvasBase:  # a Figure made without pyplot: draw it with Agg
        canvas = FigureCanvasAgg(figure)
    if not isinstance(canvas, FigureCanvasAgg):  # a GUI canvas of its own (macosx, cairo)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return Captured(data=buffer.getvalue())
    canvas.draw()
    return Captured(pixels=numpy.array(canvas.buffer_rgba(), copy=True))


def _checked_array(array: Any) -> numpy.ndarray:
    import numpy

    array = numpy.asarray(array)
    kind = array.dtype.kind
    if kind not in "biuf":
        raise InvalidImageError(f"array must hold numbers or booleans, not {array.dtype}")
    shape = array.shape
    if not (array.ndim == 2 or (array.ndim == 3 and shape[2] in (3, 4))):
        raise InvalidImageError(
            f"array must be 2-D (data for a colormap) or H×W×3/4 (RGB/RGBA), not shape {shape}"
        )
    if not (0 < shape[0] <= MAX_SIDE and 0 < shape[1] <= MAX_SIDE):
        raise InvalidImageError(f"array of shape {shape}: each side must be 1 to {MAX_SIDE} pixels")
    if array.ndim == 3 and kind == "b":
        raise InvalidImageError("an RGB(A) array must hold numbers, not booleans")
    return array


def _to_pil(array: numpy.ndarray, encoding: Encoding) -> Any:
    import numpy
    from PIL import Image

    if array.ndim == 2:
        return colored(array, encoding.cmap, encoding.vmin, encoding.vmax)
    if array.dtype != numpy.uint8:
        # As imshow: floats are 0-1, integers 0-255; out-of-range values are clipped.
        scale = 255.0 if array.dtype.kind == "f" else 1.0
        array = numpy.clip(numpy.nan_to_num(array * scale), 0, 255).astype(numpy.uint8)
    mode = "RGBA" if array.shape[2] == 4 else "RGB"
    return Image.fromarray(numpy.ascontiguousarray(array), mode)


def _save(picture: Any, encoding: Encoding) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    if encoding.format == "png":
        level = 6 if encoding.compress_level is None else encoding.compress_level
        if picture.mode not in ("1", "L", "LA", "I", "P", "RGB", "RGBA"):
            picture = picture.convert("RGBA")
        picture.save(buffer, format="PNG", compress_level=level)
        return buffer.getvalue()
    quality = 90 if encoding.quality is None else encoding.quality
    if encoding.format == "jpeg":
        if picture.mode not in ("L", "RGB"):
            if picture.mode in ("RGBA", "LA", "P"):  # JPEG has no alpha: compose on white
                picture = picture.convert("RGBA")
                background = Image.new("RGB", picture.size, "white")
                background.paste(picture, mask=picture.getchannel("A"))
                picture = background
            else:
                picture = picture.convert("RGB")
        picture.save(buffer, format="JPEG", quality=quality)
        return buffer.getvalue()
    if picture.mode not in ("RGB", "RGBA"):
        picture = picture.convert("RGBA")
    picture.save(buffer, format="WEBP", quality=quality)
    return buffer.getvalue()


def _is_pil_image(image: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:
        return False
    return isinstance(image, Image.Image)
