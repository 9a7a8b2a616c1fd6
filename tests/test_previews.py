"""Previews (``GET …/image?max_width=N``) and the WebSocket's announce mode, on a real service."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import threading
import zlib

import httpx
import psutil
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from support import RunningService, jpeg, png, receive, receive_image, run_service, wait_for
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from elog_stream.config import Settings
from elog_stream.previews import MAX_JOBS, MAX_PIXELS


def metric(service: RunningService, name: str) -> float:
    text = httpx.get(service.url + "metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    return 0.0


def get(service: RunningService, path: str, **headers: str) -> httpx.Response:
    return httpx.get(service.url + path, headers=headers, timeout=30)


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def gif(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("P", size, 3).save(buffer, format="GIF")
    return buffer.getvalue()


def photo(size: tuple[int, int]) -> bytes:
    """A noisy opaque PNG, like a camera image: large, poorly compressible."""
    image = Image.effect_noise(size, 60).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` RGB pixels (a decompression bomb's
    header; the data would run out long before)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
        + chunk(b"IEND", b"")
    )


def test_a_preview_keeps_the_aspect_and_the_type(service: RunningService) -> None:
    service.publisher.publish("p/png", "e", png("wide", size=(400, 300)))
    service.publisher.publish("p/jpeg", "e", jpeg(size=(800, 200)))
    service.publisher.publish("p/gif", "e", gif((300, 150)))

    response = get(service, "api/topics/p/png/image?max_width=100")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert opened(response.content).size == (100, 75)

    response = get(service, "api/topics/p/jpeg/image?max_width=200")
    assert response.headers["content-type"] == "image/jpeg"
    assert opened(response.content).size == (200, 50)

    response = get(service, "api/topics/p/gif/image?max_width=30")
    assert response.headers["content-type"] == "image/png"
    assert opened(response.content).size == (30, 15)


def test_a_preview_is_never_upscaled(service: RunningService) -> None:
    original = png("small", size=(64, 48))
    service.publisher.publish("p/small", "e", original)
    for width in (64, 65, 4096):
        response = get(service, f"api/topics/p/small/image?max_width={width}")
        assert response.status_code == 200
        assert response.content == original  # the original itself, not re-encoded
        assert response.headers["content-type"] == "image/png"


def test_a_photo_like_png_is_previewed_as_jpeg(service: RunningService) -> None:
    service.publisher.publish("p/photo", "e", photo((1200, 900)))
    response = get(service, "api/topics/p/photo/image?max_width=320")
    assert response.headers["content-type"] == "image/jpeg"
    assert opened(response.content).size == (320, 240)
    # A plot (flat colours) stays PNG: no JPEG ringing around lines and text.
    service.publisher.publish("p/plot", "e", png("plot", size=(1200, 900)))
    response = get(service, "api/topics/p/plot/image?max_width=320")
    assert response.headers["content-type"] == "image/png"


@pytest.mark.parametrize("width", ["15", "0", "-1", "4097", "abc", "1e3", ""])
def test_widths_out_of_bounds_are_refused_with_the_bounds(
    service: RunningService, width: str
) -> None:
    service.publisher.publish("p/bounds", "e", png())
    for path in ("api/topics/p/bounds/image", "api/topics/p/bounds/history/1/image"):
        response = get(service, f"{path}?max_width={width}")
        assert response.status_code == 422, response.text
        detail = response.json()["detail"][0]
        assert detail["loc"] == ["query", "max_width"]
        assert any(bound in detail["msg"] for bound in ("16", "4096", "integer"))


def test_history_images_have_previews_too(service: RunningService) -> None:
    service.publisher.publish("p/kept", "e", png("one", size=(400, 200)))
    service.publisher.publish("p/kept", "e", png("two", size=(800, 200)))
    first = get(service, "api/topics/p/kept/history/1/image?max_width=200")
    second = get(service, "api/topics/p/kept/history/2/image?max_width=200")
    assert opened(first.content).size == (200, 100)
    assert opened(second.content).size == (200, 50)
    assert get(service, "api/topics/p/kept/history/9/image?max_width=200").status_code == 404


def test_previews_are_cached_per_image_and_width(service: RunningService) -> None:
    service.publisher.publish("p/cache", "e", png("cached", size=(600, 400)))
    first = get(service, "api/topics/p/cache/image?max_width=300")
    assert metric(service, "elog_previews_made_total") == 1
    assert metric(service, "elog_preview_cache_hits_total") == 0
    second = get(service, "api/topics/p/cache/image?max_width=300")
    assert second.content == first.content
    assert metric(service, "elog_previews_made_total") == 1
    assert metric(service, "elog_preview_cache_hits_total") == 1
    assert metric(service, "elog_preview_cache_bytes") >= len(first.content)

    get(service, "api/topics/p/cache/image?max_width=160")  # another width: made anew
    assert metric(service, "elog_previews_made_total") == 2
    # The same image in the history is the same digest: a hit.
    get(service, "api/topics/p/cache/history/1/image?max_width=160")
    assert metric(service, "elog_preview_cache_hits_total") == 2
    stats = get(service, "api/stats").json()
    assert stats["previews_made"] == 2 and stats["preview_cache_hits"] == 2


async def test_concurrent_requests_for_one_preview_make_it_once(
    service: RunningService,
) -> None:
    service.publisher.publish("p/burst", "e", photo((2000, 1500)))
    async with httpx.AsyncClient(timeout=30) as client:
        url = service.url + "api/topics/p/burst/image?max_width=640"
        responses = await asyncio.gather(*(client.get(url) for _ in range(8)))
    assert {response.status_code for response in responses} == {200}
    assert len({response.content for response in responses}) == 1
    assert metric(service, "elog_previews_made_total") == 1
    assert metric(service, "elog_preview_cache_hits_total") == 7


async def test_preview_jobs_are_bounded_and_the_service_keeps_answering(
    service: RunningService,
) -> None:
    service.publisher.publish("p/jobs", "e", photo((2400, 1800)))
    seen: list[int] = []
    stop = threading.Event()

    def count_jobs() -> None:
        while not stop.is_set():
            seen.append(sum(t.name.startswith("elog-preview") for t in threading.enumerate()))
            stop.wait(0.005)

    watcher = threading.Thread(target=count_jobs)
    watcher.start()
    try:
        async with httpx.AsyncClient(timeout=60) as client:
            base = service.url + "api/topics/p/jobs/image?max_width="
            previews = [client.get(f"{base}{width}") for width in range(100, 1100, 100)]
            answers = await asyncio.gather(*previews, client.get(service.url + "healthz"))
    finally:
        stop.set()
        watcher.join()
    assert [answer.status_code for answer in answers] == [200] * 11
    assert max(seen) <= MAX_JOBS
    assert metric(service, "elog_previews_made_total") == 10


def test_a_zero_budget_caches_nothing(settings: Settings, publisher) -> None:
    with run_service(settings.replace(preview_cache_bytes=0)) as service:
        publisher.publish("p/nocache", "e", png("x", size=(400, 300)))
        get(service, "api/topics/p/nocache/image?max_width=100")
        get(service, "api/topics/p/nocache/image?max_width=100")
        assert metric(service, "elog_previews_made_total") == 2
        assert metric(service, "elog_preview_cache_hits_total") == 0
        assert metric(service, "elog_preview_cache_bytes") == 0


def test_a_preview_has_its_own_etag_and_answers_304(service: RunningService) -> None:
    service.publisher.publish("p/etag", "e", png("etag", size=(400, 300)))
    full = get(service, "api/topics/p/etag/image")
    preview = get(service, "api/topics/p/etag/image?max_width=100")
    digest = full.headers["etag"].strip('"')
    assert preview.headers["etag"] == f'"{digest}.w100"'
    assert preview.headers["cache-control"] == "no-cache"
    made = metric(service, "elog_previews_made_total")
    again = get(
        service, "api/topics/p/etag/image?max_width=100", **{"If-None-Match": f'"{digest}.w100"'}
    )
    assert again.status_code == 304 and again.content == b""
    assert metric(service, "elog_previews_made_total") == made  # nothing decoded for a 304
    # The full image's tag is not the preview's.
    other = get(
        service, "api/topics/p/etag/image?max_width=100", **{"If-None-Match": f'"{digest}"'}
    )
    assert other.status_code == 200
    head = httpx.head(service.url + "api/topics/p/etag/image?max_width=100", timeout=10)
    assert head.status_code == 200 and head.headers["etag"] == f'"{digest}.w100"'


def test_a_decompression_bomb_is_refused_without_decoding(service: RunningService) -> None:
    bomb = png_claiming(50_000, 50_000)  # 2.5 Gpx, 7.5 GB decoded; the file is tiny
    assert len(bomb) < 200
    service.publisher.publish("p/bomb", "e", bomb)
    # A real one over the preview limit but under Pillow's own: 10,000 x 10,000 zeros.
    buffer = io.BytesIO()
    Image.new("L", (10_000, 10_000)).save(buffer, format="PNG")
    assert 10_000 * 10_000 > MAX_PIXELS and len(buffer.getvalue()) < 1_000_000
    service.publisher.publish("p/big", "e", buffer.getvalue())
    process = psutil.Process()
    before = process.memory_info().rss

    for topic in ("p/bomb", "p/big"):
        response = get(service, f"api/topics/{topic}/image?max_width=320")
        assert response.status_code == 422
        assert response.json()["detail"].startswith("no preview:")
    response = get(service, "api/topics/p/big/image?max_width=320")
    assert "10000x10000" in response.json()["detail"] or "pixels" in response.json()["detail"]

    assert process.memory_info().rss - before < 64 * 1024 * 1024
    assert metric(service, "elog_previews_refused_total") == 3
    assert service.ready().status_code == 200
    # The image itself is still served, and other previews still made.
    assert get(service, "api/topics/p/bomb/image").content == bomb
    service.publisher.publish("p/fine", "e", png("fine", size=(400, 300)))
    assert get(service, "api/topics/p/fine/image?max_width=100").status_code == 200


async def test_a_viewer_may_ask_for_announcements_without_bytes(
    service: RunningService,
) -> None:
    image = png("announce", size=(400, 300))
    service.publisher.publish("p/ws", "e", image)
    wait_for(lambda: get(service, "api/topics").json(), "the service to hold the topic")
    async with connect(service.ws_url + "?images=announce") as ws:
        assert (await receive(ws, "sync"))["topics"] == ["p/ws"]
        header = json.loads(await ws.recv())
        assert header["type"] == "image" and header["topic"] == "p/ws"
        assert header["bytes"] is False
        assert header["size"] == len(image)
        service.publisher.publish("p/ws", "e", png("second", size=(400, 300)))
        update = json.loads(await ws.recv())  # a text frame again: no binary in between
        assert update["seq"] == 2 and update["bytes"] is False
        assert get(service, "api/stats").json()["image_bytes_sent"] == 0

        # A subscribe switches to bytes; without "images" the mode stays.
        await ws.send(json.dumps({"type": "subscribe", "images": "bytes"}))
        await receive(ws, "sync")
        service.publisher.publish("p/ws", "e", png("bytes", size=(400, 300)))
        header, data = await receive_image(ws, "p/ws")
        assert "bytes" not in header and data == get(service, "api/topics/p/ws/image").content
        await ws.send(json.dumps({"type": "subscribe", "images": "announce"}))
        await receive(ws, "sync")
        await ws.send(json.dumps({"type": "subscribe"}))
        await receive(ws, "sync")
        service.publisher.publish("p/ws", "e", png("third", size=(400, 300)))
        update = await receive(ws, "image")
        assert update["seq"] == 4 and update["bytes"] is False

        await ws.send(json.dumps({"type": "subscribe", "images": "thumbnails"}))
        error = await receive(ws, "error")
        assert "images must be one of 'bytes', 'announce'" in error["message"]


async def test_an_unknown_image_mode_in_the_url_closes_with_1008(
    service: RunningService,
) -> None:
    async with connect(service.ws_url + "?images=all") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert "images must be one of" in closed.value.rcvd.reason


async def test_default_viewers_still_get_the_bytes(service: RunningService) -> None:
    image = png("default", size=(400, 300))
    service.publisher.publish("p/default", "e", image)
    async with connect(service.ws_url) as ws:
        header, data = await receive_image(ws, "p/default")
    assert "bytes" not in header and data == image
    wait_for(lambda: get(service, "api/stats").json()["image_bytes_sent"] == len(image), "bytes")
