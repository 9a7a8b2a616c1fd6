"""The pure parts: wire-format names, notifications, legacy hashes, the viewer mailbox."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from support import png
from websockets.frames import Frame, Opcode

from elog_stream.frames import message, text_frame
from elog_stream.hub import Expired, Filter, Hub
from elog_stream.protocol import (
    Keepalive,
    Keys,
    MalformedNotificationError,
    decode_notification,
    encode_keepalive,
    encode_notification,
)
from elog_stream.records import TopicImage, parse_topic
from elog_stream.stats import Stats


def test_key_names_and_scan_pattern() -> None:
    keys = Keys("elog:")
    assert keys.topic("cxif7214/detector/sum") == "elog:topic:{cxif7214/detector/sum}"
    assert keys.topic_of(b"elog:topic:{cxif7214/detector/sum}") == "cxif7214/detector/sum"
    assert keys.channel == "elog:updates"
    assert keys.topic_pattern == "elog:topic:{*}"
    assert Keys("lab[1]*:").topic_pattern == r"lab\[1\]\*:topic:{*}"
    with pytest.raises(ValueError, match="not a topic key"):
        keys.topic_of("other:thing")


def test_notifications_round_trip_and_reject_garbage() -> None:
    assert decode_notification(encode_notification("a/b")) == "a/b"
    assert decode_notification('{"topic": "x", "future": 1}') == "x"
    assert decode_notification(encode_keepalive("me:1")) == Keepalive("me:1")
    garbage = {
        b"\xff": "malformed_notification",
        "not json": "malformed_notification",
        "[]": "malformed_notification",
        '{"topic": 3}': "malformed_notification",
        "{}": "malformed_notification",
        "[" * 4000: "malformed_notification",  # deep nesting, under the size limit
        "[" * 100_000: "oversized_notification",
        '{"topic": "a//b"}': "invalid_topic",
        '{"topic": "x{y}"}': "invalid_topic",
    }
    for bad, kind in garbage.items():
        with pytest.raises(MalformedNotificationError) as refused:
            decode_notification(bad)
        assert refused.value.kind == kind


def test_a_hash_written_by_the_2014_tool_is_readable() -> None:
    image = png("legacy")
    # The read script's reply: the topic fields in protocol.TOPIC_FIELDS order, then the image.
    legacy = [b"cxif7214", b"old", None, None, None, None, image]
    parsed = parse_topic("legacy", [b"ok", 1500, legacy], now=1000.0, max_image_bytes=10**6)
    assert parsed is not None
    assert (parsed.seq, parsed.content_type) == (0, "image/png")
    assert parsed.digest == hashlib.sha256(image).hexdigest()
    assert parsed.expires_at == 1001.5
    assert parse_topic("gone", None, now=0.0, max_image_bytes=10**6) is None


def image(topic: str, seq: int, experiment: str = "e") -> TopicImage:
    return TopicImage(topic, experiment, "", seq, float(seq), "image/png", f"d{seq}", b"x")


async def test_a_slow_viewer_gets_only_the_latest_image_per_topic() -> None:
    hub = Hub(Stats())
    with hub.connect(Filter()) as (viewer, names):
        assert names == []
        for seq in range(1, 6):
            hub.update(image("a", seq))
        hub.update(image("b", 1))
        assert [await viewer.next(), await viewer.next()] == [image("a", 5), image("b", 1)]
        assert viewer.dropped == 4 and hub.stats.as_dict()["frames_superseded"] == 4
        hub.update(image("a", 5))  # the same image again is not sent twice
        hub.remove("a")
        assert await viewer.next() == Expired("a")
        waiting = asyncio.create_task(viewer.next())
        await asyncio.sleep(0)
        assert not waiting.done()
        waiting.cancel()  # cancelling a waiting next() is safe
    assert hub.viewer_count == 0


async def test_a_waiting_viewer_gets_live_images_directly_and_nothing_overtakes_the_mailbox() -> (
    None
):
    hub = Hub(Stats())
    written: list[TopicImage] = []
    writable = True

    def direct(image: TopicImage) -> bool:
        if writable:
            written.append(image)
        return writable

    with hub.connect(Filter()) as (viewer, _):
        waiting = asyncio.create_task(viewer.next(direct))
        await asyncio.sleep(0)
        hub.update(image("a", 1))
        hub.update(image("a", 1))  # held already: not written again
        assert written == [image("a", 1)] and not waiting.done()
        assert hub.stats.as_dict()["images_sent"] == 1
        writable = False
        hub.update(image("b", 1))  # refused: queued, and the sender woken
        writable = True
        hub.update(image("b", 2))  # must not overtake b 1's slot: it replaces it
        hub.update(image("c", 1))  # nor any other queued item
        assert written == [image("a", 1)]
        assert await waiting == image("b", 2)
        assert await viewer.next(direct) == image("c", 1)
        viewer.say({"type": "sync", "topics": []})
        hub.update(image("d", 1))  # queued behind the message
        assert await viewer.next(direct) == {"type": "sync", "topics": []}
        assert await viewer.next(direct) == image("d", 1)
        assert written == [image("a", 1)]


@pytest.mark.parametrize("length", [0, 125, 126, 65_535, 65_536])
def test_text_frames_are_what_websockets_sends(length: int) -> None:
    text = "é" * (length // 2) + "x" * (length % 2)
    assert text_frame(text) == Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


def test_an_image_s_frames_are_its_header_and_its_bytes_uncopied() -> None:
    data = b"\x89PNG\r\n\x1a\n" + bytes(70_000)  # over 65,535: a 64-bit length
    picture = TopicImage("t", "e", "", 3, 3.0, "image/png", "d3", data)
    header = {"type": "image", **picture.metadata()}
    binary = Frame(Opcode.BINARY, picture.data).serialize(mask=False)
    head, payload = picture.frames.with_bytes
    assert head + payload == text_frame(message(header)) + binary
    assert payload is data and picture.frames is picture.frames
    assert picture.frames.announced == (text_frame(message({**header, "bytes": False})),)
    with pytest.raises(ValueError):
        message({"updated_at": float("nan")})


def test_filters() -> None:
    everything = Filter()
    detector = Filter.parse(["det/*", "exact"], ["cxi"])
    assert everything.matches(image("any", 1))
    assert detector.matches(image("det/sum", 1, "cxi"))
    assert detector.matches(image("exact", 1, "cxi"))
    assert not detector.matches(image("det/sum", 1, "mfx"))
    assert not detector.matches(image("other", 1, "cxi"))
    for bad in ("det/*", [1], ["x"] * 101):
        with pytest.raises(ValueError):
            Filter.parse(bad)


def test_viewer_unregisters_on_error() -> None:
    hub = Hub(Stats())
    with pytest.raises(RuntimeError), hub.connect(Filter()):
        assert hub.viewer_count == 1
        raise RuntimeError("handler failed")
    assert hub.viewer_count == 0
