"""Image sources through publish(): numpy arrays, PIL images, figures, and encoding options."""

from __future__ import annotations

import io

import matplotlib
import numpy
import pytest
from PIL import Image
from support import RunningService, png, receive_image
from websockets.asyncio.client import connect

from elog_stream import AsyncPublisher, InvalidImageError, Publisher
from elog_stream.config import Settings

matplotlib.use("Agg")
from matplotlib import colormaps, pyplot  # noqa: E402


def stored(publisher: Publisher, topic: str) -> Image.Image:
    image = Image.open(io.BytesIO(publisher.grab(topic).data))
    image.load()
    return image


def rgba(colormap: str, value: float) -> tuple[int, ...]:
    return tuple(int(channel) for channel in colormaps[colormap](value, bytes=True))


def test_a_2d_array_is_drawn_with_a_colormap_like_imshow(publisher: Publisher) -> None:
    data = numpy.array([[0.0, 5.0, 10.0], [numpy.nan, 20.0, -3.0]])
    publisher.publish("array/2d", "e", data, cmap="magma", vmin=0, vmax=10)
    image = stored(publisher, "array/2d")
    assert image.size == (3, 2)  # width × height: rows are image rows, row 0 on top
    assert publisher.grab("array/2d").content_type == "image/png"
    pixels = image.convert("RGBA").load()
    assert pixels[0, 0] == rgba("magma", 0.0)
    assert pixels[1, 0] == rgba("magma", 0.5)
    assert pixels[2, 0] == rgba("magma", 1.0)
    assert pixels[1, 1] == rgba("magma", 1.0)  # over vmax: clipped to the top colour
    assert pixels[2, 1] == rgba("magma", 0.0)  # under vmin
    assert pixels[0, 1][3] == 0  # NaN: the colormap's "bad" colour, transparent


def test_a_2d_array_without_limits_spans_its_finite_range(publisher: Publisher) -> None:
    publisher.publish("array/auto", "e", numpy.array([[1, 2], [3, numpy.inf]]))
    pixels = stored(publisher, "array/auto").convert("RGBA").load()
    default = matplotlib.rcParams["image.cmap"]
    assert pixels[0, 0] == rgba(default, 0.0)
    assert pixels[0, 1] == rgba(default, 1.0)


def test_rgb_arrays_are_stored_exactly(publisher: Publisher) -> None:
    rng = numpy.random.default_rng(7)
    rgb = rng.integers(0, 256, size=(30, 40, 3), dtype=numpy.uint8)
    publisher.publish("array/rgb", "e", rgb)
    assert numpy.array_equal(numpy.asarray(stored(publisher, "array/rgb")), rgb)

    rgba_floats = numpy.zeros((2, 2, 4))
    rgba_floats[..., 0] = [[0.0, 0.5], [1.0, 2.0]]  # floats are 0-1 as in imshow; 2.0 clipped
    rgba_floats[..., 3] = 1.0
    publisher.publish("array/rgba", "e", rgba_floats)
    image = stored(publisher, "array/rgba")
    assert image.mode == "RGBA"
    assert numpy.asarray(image)[..., 0].tolist() == [[0, 127], [255, 255]]


def test_the_array_is_copied_when_published(publisher: Publisher) -> None:
    data = numpy.zeros((4, 4, 3), dtype=numpy.uint8)
    publisher.publish("array/copy", "e", data)
    data[:] = 255
    assert numpy.asarray(stored(publisher, "array/copy")).max() == 0


def test_pil_images_and_encoding_options(publisher: Publisher) -> None:
    photo = Image.radial_gradient("L").resize((512, 512)).convert("RGB")
    publisher.publish("pil/png", "e", photo)
    assert numpy.array_equal(numpy.asarray(stored(publisher, "pil/png")), numpy.asarray(photo))

    publisher.publish("pil/fast", "e", photo, compress_level=1)
    publisher.publish("pil/small", "e", photo, compress_level=9)
    fast, small = publisher.grab("pil/fast"), publisher.grab("pil/small")
    assert len(fast.data) > len(small.data)
    assert stored(publisher, "pil/fast").tobytes() == stored(publisher, "pil/small").tobytes()

    sizes = {}
    for kind in ("jpeg", "webp"):
        for quality in (20, 95):
            topic = f"pil/{kind}/{quality}"
            publisher.publish(topic, "e", photo, format=kind, quality=quality)
            assert publisher.grab(topic).content_type == f"image/{kind}"
            assert stored(publisher, topic).size == (512, 512)
            sizes[kind, quality] = publisher.grab(topic).size
        assert sizes[kind, 20] < sizes[kind, 95]


def test_transparent_pixels_become_white_in_jpeg(publisher: Publisher) -> None:
    clear = numpy.zeros((8, 8, 4), dtype=numpy.uint8)  # transparent black
    publisher.publish("jpeg/alpha", "e", clear, format="jpeg")
    assert numpy.asarray(stored(publisher, "jpeg/alpha")).min() > 250


def test_figures_are_drawn_at_their_size(publisher: Publisher) -> None:
    figure = pyplot.figure(figsize=(4, 3), dpi=50)
    figure.gca().plot([1, 3, 2])
    publisher.publish("figure/png", "e", figure)
    publisher.publish("figure/jpeg", "e", figure, format="jpeg", quality=80)
    pyplot.close(figure)
    assert stored(publisher, "figure/png").size == (200, 150)
    assert publisher.grab("figure/jpeg").content_type == "image/jpeg"


def test_a_figure_made_without_pyplot_is_drawn_too(publisher: Publisher) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 2), dpi=40)
    figure.add_subplot().plot([1, 2])
    publisher.publish("figure/bare", "e", figure)
    assert stored(publisher, "figure/bare").size == (80, 80)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (numpy.zeros(5), "must be 2-D .* not shape \\(5,\\)"),
        (numpy.zeros((0, 3)), "each side must be 1 to 32768 pixels"),
        (numpy.zeros((3, 3, 2)), "not shape \\(3, 3, 2\\)"),
        (numpy.array([["a", "b"]]), "must hold numbers or booleans, not <U1"),
        (numpy.zeros((2, 2), dtype=complex), "must hold numbers or booleans, not complex128"),
        (numpy.zeros((2, 2, 3), dtype=bool), "RGB\\(A\\) array must hold numbers"),
    ],
)
def test_unusable_arrays_are_refused(publisher: Publisher, image: object, message: str) -> None:
    with pytest.raises(InvalidImageError, match=message):
        publisher.publish("bad/array", "e", image)
    assert publisher.topics() == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"format": "gif"}, "format must be one of png, jpeg, webp, not 'gif'"),
        ({"quality": 50}, "quality applies to jpeg and webp"),
        ({"format": "jpeg", "compress_level": 1}, "compress_level applies to format='png'"),
        ({"format": "webp", "quality": 101}, "quality must be an integer from 1 to 100"),
        ({"compress_level": 1.5}, "compress_level must be an integer from 0 to 9"),
        ({"cmap": "no-such-map"}, "cmap 'no-such-map' is not a matplotlib colormap"),
        ({"vmin": 3, "vmax": 3}, "vmin \\(3\\) must be less than vmax \\(3\\)"),
    ],
)
def test_bad_encoding_options_are_refused(
    publisher: Publisher, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        publisher.publish("bad/options", "e", numpy.zeros((2, 2)), **options)  # type: ignore[arg-type]
    assert publisher.topics() == []


def test_encoded_bytes_are_sent_as_they_are(publisher: Publisher) -> None:
    image = png("as is")
    with pytest.raises(ValueError, match="encoded bytes and files are published as they are"):
        publisher.publish("bytes", "e", image, format="jpeg")
    publisher.publish("bytes", "e", image)
    assert publisher.grab("bytes").data == image


async def test_async_publisher_and_viewer_get_an_array(
    service: RunningService, settings: Settings
) -> None:
    data = numpy.arange(64 * 48, dtype=numpy.uint16).reshape(48, 64)
    async with connect(service.ws_url, max_size=None) as ws:
        async with AsyncPublisher(settings.redis_url, prefix=settings.prefix) as publisher:
            await publisher.publish("async/array", "e", data, format="webp", quality=60)
        header, received = await receive_image(ws, "async/array")
    assert header["content_type"] == "image/webp"
    assert Image.open(io.BytesIO(received)).size == (64, 48)


@pytest.mark.parametrize("cmap", ["viridis", "gray", "tab10", "coolwarm"])
@pytest.mark.parametrize("with_nan", [False, True])
def test_colormapped_pixels_are_exactly_those_of_imshow(
    publisher: Publisher, cmap: str, with_nan: bool
) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    rng = numpy.random.default_rng(3)
    data = rng.normal(0, 1, size=(64, 96))  # every colour of the map, and out of range
    data[0, :3] = [numpy.inf, -numpy.inf, 1.5]
    if with_nan:
        data[5:9, 5:9] = numpy.nan
    publisher.publish("exact", "e", data, cmap=cmap, vmin=-1, vmax=1.5)
    expected = ScalarMappable(Normalize(-1, 1.5), cmap).to_rgba(
        numpy.ma.masked_invalid(data), bytes=True
    )
    assert numpy.array_equal(numpy.asarray(stored(publisher, "exact").convert("RGBA")), expected)
