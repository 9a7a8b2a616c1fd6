"""The HTTP API over a real socket: topics, images with ETags, HTTP publishing, health, schema."""

from __future__ import annotations

import httpx
import pytest
from support import RunningService, jpeg, png, receive_image, run_service, wait_for
from websockets.asyncio.client import connect

from elog_stream import Publisher
from elog_stream.config import Settings


def wait_for_seq(service: RunningService, topic: str, seq: int) -> dict:
    def current() -> dict | None:
        response = httpx.get(f"{service.url}api/topics/{topic}")
        return (
            response.json()
            if response.status_code == 200 and response.json()["seq"] == seq
            else None
        )

    return wait_for(current, f"{topic} seq {seq} in the service")  # type: ignore[return-value]


def test_topics_topic_and_image(service: RunningService, publisher: Publisher) -> None:
    publisher.publish("cxif7214/detector/sum", "cxif7214", png("sum"), "all panels")
    publisher.publish("cxif7214/jet", "cxif7214", jpeg())
    topic = wait_for_seq(service, "cxif7214/jet", 1)
    assert topic["content_type"] == "image/jpeg" and topic["size"] == len(jpeg())

    topics = httpx.get(service.url + "api/topics").json()
    assert [t["topic"] for t in topics] == ["cxif7214/jet", "cxif7214/detector/sum"]  # newest first
    assert set(topics[1]) == {
        "topic", "experiment", "description", "seq", "updated_at",
        "content_type", "size", "digest", "expires_at",
    }  # fmt: skip

    response = httpx.get(service.url + "api/topics/cxif7214/detector/sum/image")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == png("sum")
    etag = response.headers["etag"]
    assert etag == f'"{topics[1]["digest"]}"'
    again = httpx.get(
        service.url + "api/topics/cxif7214/detector/sum/image", headers={"If-None-Match": etag}
    )
    assert again.status_code == 304 and again.content == b""
    assert httpx.head(service.url + "api/topics/cxif7214/jet/image").headers["content-type"] == (
        "image/jpeg"
    )


def test_unknown_topic_is_a_404_json(service: RunningService) -> None:
    for path in ("api/topics/nope", "api/topics/nope/image", "api/topics/a/b/c"):
        response = httpx.get(service.url + path)
        assert response.status_code == 404
        assert response.json()["detail"].startswith("no live image for topic")


def test_http_publish(service: RunningService, publisher: Publisher) -> None:
    response = httpx.post(
        service.url + "api/topics/http/plot",
        params={"experiment": "cxif7214", "description": "by curl"},
        content=png("http"),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["topic"], body["seq"], body["description"]) == ("http/plot", 1, "by curl")
    assert publisher.grab("http/plot").data == png("http")


@pytest.mark.parametrize(
    ("path", "params", "body", "status", "reason"),
    [
        ("api/topics/t", {"experiment": "e"}, b"<svg/>", 415, "looks like SVG"),
        ("api/topics/t", {"experiment": "e"}, b"", 415, "image is empty"),
        ("api/topics/t", {"experiment": "e"}, png() + b"x" * 3000, 413, "over the limit"),
        ("api/topics/t", {}, png(), 422, "experiment"),
        ("api/topics/t", {"experiment": ""}, png(), 422, "at least 1 character"),
        ("api/topics/t", {"experiment": "a\x01b"}, png(), 422, "should match pattern"),
        ("api/topics/a%0Ab", {"experiment": "e"}, png(), 422, "control characters"),
        ("api/topics/a/image", {"experiment": "e"}, png(), 405, "Method Not Allowed"),
    ],
    ids=[
        "svg",
        "empty",
        "too-large",
        "no-experiment",
        "empty-experiment",
        "control-experiment",
        "control-topic",
        "reserved-topic",
    ],
)
def test_http_publish_rejects_bad_input_with_the_reason(
    settings: Settings, path: str, params: dict, body: bytes, status: int, reason: str
) -> None:
    small = Settings(redis_url=settings.redis_url, prefix=settings.prefix, max_image_bytes=2000)
    with run_service(small) as service:
        response = httpx.post(service.url + path, params=params, content=body)
        assert response.status_code == status, response.text
        assert reason in response.text
        assert httpx.get(service.url + "api/topics").json() == []
        assert service.health().status_code == 200  # and the service keeps running


def test_healthz_readyz_and_openapi(service: RunningService) -> None:
    for health in (service.health(), service.ready()):
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
    schema = httpx.get(service.url + "openapi.json").json()
    assert "/api/topics/{topic}/image" in schema["paths"]
    assert "post" in schema["paths"]["/api/topics/{topic}"]


def test_viewer_page_is_served_with_a_strict_csp(service: RunningService) -> None:
    response = httpx.get(service.url)
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_served_under_a_path_prefix_with_or_without_stripping(
    settings: Settings, publisher: Publisher
) -> None:
    publisher.publish("prefixed", "e", png("p"))
    with run_service(settings, root_path="/elog") as service:
        assert service.url.endswith("/elog/")
        origin = service.url.removesuffix("elog/")
        for base in (service.url, origin):  # a proxy that keeps or strips the prefix
            assert httpx.get(base).headers["content-type"].startswith("text/html")
            response = httpx.get(base + "api/topics/prefixed/image")
            assert response.content == png("p")
        async with connect(service.ws_url) as ws:
            header, data = await receive_image(ws, "prefixed")
            assert data == png("p")


def test_probes_answer_head_too(settings: Settings) -> None:
    """Load balancers often probe with HEAD; it must not fall through to the viewer's files."""
    with run_service(settings.replace(view_token="a-view-token-for-head-probes")) as service:
        for path in ("healthz", "readyz"):
            response = httpx.head(service.url + path)
            assert (response.status_code, response.content) == (200, b""), path
