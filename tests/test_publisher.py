"""Publisher, AsyncPublisher, elogshow and grab against a real Redis server."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import threading
import time

import matplotlib
import pytest
import redis
from support import jpeg, png, wait_for

import elog_stream
from elog_stream import (
    AsyncPublisher,
    ImageTooLargeError,
    InvalidImageError,
    InvalidNameError,
    Publisher,
    RedisUnavailableError,
    TopicNotFoundError,
)
from elog_stream.config import Settings
from elog_stream.embedded import free_port

matplotlib.use("Agg")
from matplotlib import pyplot  # noqa: E402


def test_publish_stores_the_documented_hash(publisher: Publisher, settings: Settings) -> None:
    image = png("one")
    seq = publisher.publish("cxif7214/detector/sum", "cxif7214", image, "sum of all panels")
    assert seq == 1
    raw = redis.Redis.from_url(settings.redis_url)
    key = f"{settings.prefix}topic:{{cxif7214/detector/sum}}"
    fields = raw.hgetall(key)
    assert fields[b"experiment"] == b"cxif7214"
    assert fields[b"description"] == b"sum of all panels"
    assert fields[b"pngimage"] == image
    assert fields[b"content_type"] == b"image/png"
    assert fields[b"seq"] == b"1"
    assert fields[b"digest"] == hashlib.sha256(image).hexdigest().encode()
    assert float(fields[b"updated_at"]) > 1.7e9
    assert 3590 < raw.ttl(key) <= 3600


def test_sequence_number_counts_publishes_per_topic(publisher: Publisher) -> None:
    assert [publisher.publish("a", "e", png(str(i))) for i in range(3)] == [1, 2, 3]
    assert publisher.publish("b", "e", png()) == 1
    assert publisher.grab("a").seq == 3


def test_accepts_webp_and_gif(publisher: Publisher) -> None:
    from PIL import Image

    for kind, content_type in (("WEBP", "image/webp"), ("GIF", "image/gif")):
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), "teal").save(buffer, format=kind)
        publisher.publish(f"kind/{kind}", "e", buffer.getvalue())
        assert publisher.grab(f"kind/{kind}").content_type == content_type


def test_accepts_figure_bytes_jpeg_and_path(publisher: Publisher, tmp_path) -> None:
    figure = pyplot.figure()
    figure.gca().plot([1, 3, 2])
    publisher.publish("figure", "e", figure)
    pyplot.close(figure)
    assert publisher.grab("figure").data.startswith(b"\x89PNG")

    publisher.publish("jpeg", "e", jpeg())
    assert publisher.grab("jpeg").content_type == "image/jpeg"

    path = tmp_path / "plot.png"
    path.write_bytes(png("file"))
    publisher.publish("path", "e", path)
    publisher.publish("str-path", "e", str(path))
    assert publisher.grab("path").data == publisher.grab("str-path").data == png("file")


def test_ttl_is_configurable(settings: Settings) -> None:
    with Publisher(settings.redis_url, prefix=settings.prefix, ttl=5) as publisher:
        publisher.publish("short", "e", png())
        expires_at = publisher.grab("short").expires_at
    raw = redis.Redis.from_url(settings.redis_url)
    assert 0 < raw.ttl(settings.keys.topic("short")) <= 5
    assert expires_at is not None and expires_at - time.time() <= 5


def test_topic_expires(settings: Settings) -> None:
    with Publisher(settings.redis_url, prefix=settings.prefix, ttl=1) as publisher:
        publisher.publish("gone-soon", "e", png())
        assert publisher.grab("gone-soon").seq == 1
        raw = redis.Redis.from_url(settings.redis_url)
        key = f"{settings.prefix}topic:{{gone-soon}}"
        assert 0 < raw.pttl(key) <= 1000
        # Redis expires the key itself; poll with a deadline rather than sleep.
        wait_for(lambda: not raw.exists(key), "the topic hash to expire")
        with pytest.raises(TopicNotFoundError):
            publisher.grab("gone-soon")


def test_grab_and_topics(publisher: Publisher) -> None:
    publisher.publish("x/one", "exp-a", png("1"), "first")
    publisher.publish("x/two", "exp-b", png("2"))
    image = publisher.grab("x/one")
    assert (image.topic, image.experiment, image.description) == ("x/one", "exp-a", "first")
    assert image.data == png("1") and image.size == len(png("1"))
    assert [t.topic for t in publisher.topics()] == ["x/one", "x/two"]
    with pytest.raises(TopicNotFoundError, match="no live image for topic 'x/three'"):
        publisher.grab("x/three")


def test_elogshow_is_a_drop_in_for_plt_show(settings: Settings, monkeypatch) -> None:
    monkeypatch.setenv("ELOG_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("ELOG_PREFIX", settings.prefix)
    pyplot.figure()
    pyplot.plot([0, 1, 4, 9])
    assert elog_stream.elogshow("legacy", "cxif7214", "current figure") == 1
    pyplot.close("all")
    other = pyplot.figure()
    assert elog_stream.elogshow("legacy", "cxif7214", figure=other) == 2
    pyplot.close(other)
    grabbed = elog_stream.grab("legacy")
    assert grabbed.seq == 2 and grabbed.description == "" and grabbed.data.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("", "topic is empty"),
        ("bad\ntopic", "control characters"),
        ("a\x00b", "control characters"),
        ("x" * 201, "over 200"),
        ("a//b", "empty path segment"),
        ("/a", "empty path segment"),
        ("a/{b}", "contains '{' or '}'"),
        ("a/../b", "'.' or '..' segment"),
        ("./b", "'.' or '..' segment"),
        ("a/image", "reserved"),
        ("a/history/b", "reserved"),
    ],
)
def test_bad_topic_names_raise_value_error(publisher: Publisher, topic: str, message: str) -> None:
    with pytest.raises(InvalidNameError, match=message) as error:
        publisher.publish(topic, "e", png())
    assert isinstance(error.value, ValueError)


def test_bad_experiment_and_description(publisher: Publisher) -> None:
    with pytest.raises(InvalidNameError, match="experiment is empty"):
        publisher.publish("t", "", png())
    with pytest.raises(InvalidNameError, match="experiment 'a\\\\tb' contains control"):
        publisher.publish("t", "a\tb", png())
    with pytest.raises(InvalidNameError, match="description contains control"):
        publisher.publish("t", "e", png(), "bell\x07")
    publisher.publish("t", "e", png(), "two\nlines\tand a tab")


def test_bad_images_are_refused_and_nothing_is_stored(
    publisher: Publisher, settings: Settings
) -> None:
    with pytest.raises(InvalidImageError, match="not a PNG, JPEG, WebP or GIF.*looks like SVG"):
        publisher.publish("t", "e", b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    with pytest.raises(InvalidImageError, match="not a PNG, JPEG, WebP or GIF"):
        publisher.publish("t", "e", b"%PDF-1.7 ...")
    with pytest.raises(InvalidImageError, match="image is empty"):
        publisher.publish("t", "e", b"")
    with pytest.raises(
        TypeError, match="matplotlib Figure, a numpy array, a PIL image, PNG.*or a file path"
    ):
        publisher.publish("t", "e", 42)
    with Publisher(settings.redis_url, prefix=settings.prefix, max_image_bytes=100) as small:
        with pytest.raises(ImageTooLargeError, match="over the limit of 100 bytes"):
            small.publish("t", "e", png(size=(300, 300)))
    assert publisher.topics() == []


def test_unreachable_redis_names_the_url_without_password() -> None:
    url = f"redis://user:s3cret@127.0.0.1:{free_port()}/0"
    with Publisher(url) as publisher:
        with pytest.raises(RedisUnavailableError) as error:
            publisher.publish("t", "e", png())
    assert error.value.url == f"redis://user:***@127.0.0.1:{url.split(':')[3]}"
    assert "cannot reach Redis at redis://user:***@127.0.0.1" in str(error.value)
    assert "s3cret" not in str(error.value)


def test_unknown_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        Publisher("redis://localhost", colour="red")  # type: ignore[call-arg]


def test_importing_connects_to_nothing() -> None:
    # An unreachable URL in the environment must not matter at import time.
    code = "import elog_stream, sys; assert 'matplotlib.pyplot' not in sys.modules"
    env = {"ELOG_REDIS_URL": "redis://127.0.0.1:1/0", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_notification_never_precedes_the_data(publisher: Publisher, settings: Settings) -> None:
    raw = redis.Redis.from_url(settings.redis_url)
    pubsub = raw.pubsub()
    pubsub.subscribe(settings.keys.channel)
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    images = [png(str(i)) for i in range(30)]
    writer = threading.Thread(
        target=lambda: [
            publisher.publish(f"race/{i % 3}", "e", img) for i, img in enumerate(images)
        ]
    )
    writer.start()
    for _ in images:
        message = pubsub.get_message(timeout=10)
        assert message is not None and message["type"] == "message"
        topic = elog_stream.protocol.decode_notification(message["data"])
        stored = raw.hget(settings.keys.topic(topic), "pngimage")
        assert stored in images  # stored before anyone could hear about it
    writer.join()
    pubsub.close()


async def test_async_publisher(settings: Settings) -> None:
    async with AsyncPublisher(settings.redis_url, prefix=settings.prefix) as publisher:
        assert await publisher.publish("async/a", "e", png("a")) == 1
        figure = pyplot.figure()
        figure.gca().plot([2, 1])
        assert await publisher.publish("async/a", "e", figure, "from asyncio") == 2
        pyplot.close(figure)
        image = await publisher.grab("async/a")
        assert image.seq == 2 and image.description == "from asyncio"
        assert [t.topic for t in await publisher.topics()] == ["async/a"]
        with pytest.raises(InvalidImageError):
            await publisher.publish("async/a", "e", b"<html>")
        with pytest.raises(TopicNotFoundError):
            await publisher.grab("async/b")


async def test_async_publisher_unreachable() -> None:
    async with AsyncPublisher(f"redis://127.0.0.1:{free_port()}/0") as publisher:
        with pytest.raises(RedisUnavailableError, match="cannot reach Redis at redis://127"):
            await publisher.publish("t", "e", png())
        with pytest.raises(RedisUnavailableError):
            await publisher.ping()
