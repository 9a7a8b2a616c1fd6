"""What Redis hands the service is untrusted: bad data is skipped and counted, never fatal.

Careless writers (wrong types, hand-edited fields, foreign content types, junk on the update
channel) and unlucky networks (a black-holed subscription, DEL and FLUSHALL without a
notification) must never stop the feed, never be served, and never leave /readyz green over
stale data.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
import redis
from proxy import TcpProxy
from support import (
    DEADLINE,
    RunningService,
    cli_args,
    http_status,
    png,
    receive,
    receive_image,
    run_service,
    serve,
    wait_for,
)
from websockets.asyncio.client import connect

from elog_stream import (
    AsyncPublisher,
    CorruptTopicError,
    Publisher,
    PublishOutcomeUnknownError,
    RedisRefusedError,
)
from elog_stream.config import Settings
from elog_stream.embedded import EmbeddedRedis, free_port
from elog_stream.feed import MAX_BACKLOG
from elog_stream.protocol import encode_notification

MAX_IMAGE_BYTES = 100_000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def raw(settings: Settings) -> Iterator[redis.Redis]:
    """A plain client, for writing what elog-stream never would."""
    client = redis.Redis.from_url(str(settings.redis_url))
    yield client
    client.close()


def fields(image: bytes | None = None, **overrides: Any) -> dict[str, Any]:
    """A topic hash as the protocol describes it, with ``overrides`` (None drops a field)."""
    image = png("hostile") if image is None else image
    hash_fields = {
        "experiment": "e",
        "description": "d",
        "pngimage": image,
        "content_type": "image/png",
        "updated_at": "1764079268.125",
        "digest": hashlib.sha256(image).hexdigest(),
        "seq": 1,
        **overrides,
    }
    return {k: v for k, v in hash_fields.items() if v is not None}


def plant(raw: redis.Redis, settings: Settings, topic: str, **overrides: Any) -> None:
    """Write a topic hash by hand and announce it."""
    key = settings.keys.topic(topic)
    raw.delete(key)
    raw.hset(key, mapping=fields(**overrides))
    raw.expire(key, 3600)
    raw.publish(settings.keys.channel, encode_notification(topic))


def redis_port(settings: Settings) -> int:
    port = urlsplit(str(settings.redis_url)).port
    assert port is not None
    return port


def stats(service: RunningService) -> dict[str, Any]:
    return httpx.get(service.url + "api/stats").json()


# Each hostile hash and the kind it is counted as.
BAD_HASHES: dict[str, dict[str, Any]] = {
    "nan-time": {"updated_at": "nan"},
    "infinite-time": {"updated_at": "inf"},
    "negative-seq": {"seq": "-1"},
    "huge-seq": {"seq": str(2**63 - 1)},
    "text-seq": {"seq": "twelve"},
    "padded-seq": {"seq": "0123"},
    "giant-seq": {"seq": "1" * 5000},  # over Python's int() digit limit
    "bad-digest": {"digest": "00ff"},
    "control-experiment": {"experiment": "a\x00b"},
    "no-experiment": {"experiment": None},
    "html": {"image": b"<script>document.title='pwned'</script>", "content_type": "text/html"},
    "svg": {"image": b'<svg xmlns="http://www.w3.org/2000/svg"><script>1</script></svg>'},
    "javascript": {"image": b"fetch('/api/topics')", "content_type": "text/javascript"},
    "too-large": {"image": PNG_MAGIC + bytes(MAX_IMAGE_BYTES)},
}
KINDS = {
    "nan-time": "invalid_field",
    "infinite-time": "invalid_field",
    "negative-seq": "invalid_field",
    "huge-seq": "invalid_field",
    "text-seq": "invalid_field",
    "padded-seq": "invalid_field",
    "giant-seq": "invalid_field",
    "bad-digest": "invalid_field",
    "control-experiment": "invalid_field",
    "no-experiment": "invalid_field",
    "html": "not_an_image",
    "svg": "not_an_image",
    "javascript": "not_an_image",
    "too-large": "too_large",
}
JUNK_NOTIFICATIONS = {
    "[" * 100_000: "oversized_notification",
    "[" * 3_000: "malformed_notification",  # nested deeper than json's recursion limit
    "not json": "malformed_notification",
    '{"topic": 12}': "malformed_notification",
    '{"topic": "a//b"}': "invalid_topic",
    '{"topic": "\\ud800"}': "invalid_topic",  # a lone surrogate: no UTF-8 key can name it
    json.dumps({"topic": "x" * 300}): "invalid_topic",
}


async def test_bad_data_is_skipped_counted_and_never_stops_the_feed(
    settings: Settings, raw: redis.Redis
) -> None:
    limited = Settings(
        redis_url=settings.redis_url, prefix=settings.prefix, max_image_bytes=MAX_IMAGE_BYTES
    )
    keys = settings.keys
    with run_service(limited) as service, Publisher(settings.redis_url, prefix=keys.prefix) as p:
        async with connect(service.ws_url) as ws:
            await receive(ws, "sync")
            raw.set(keys.topic("string"), "1")  # a string where a hash belongs
            raw.publish(keys.channel, encode_notification("string"))
            for topic, overrides in BAD_HASHES.items():
                plant(raw, settings, topic, **overrides)
            for junk in JUNK_NOTIFICATIONS:
                raw.publish(keys.channel, junk)
            # Hashes that lie about their type but hold a real image: served as what they are.
            plant(raw, settings, "lying-type", content_type="text/html")
            plant(raw, settings, "crlf-type", content_type="image/png\r\nX-Injected: yes")
            plant(raw, settings, "latin-type", content_type="картинка/png")

            seq = await asyncio.to_thread(p.publish, "good", "e", png("good"))
            # Notifications are handled in order: anything bad pushed would come first.
            pushed = []
            while not pushed or pushed[-1] != "good":
                header, _ = await receive_image(ws)
                pushed.append(header["topic"])
            assert sorted(pushed) == ["crlf-type", "good", "latin-type", "lying-type"]
            assert header["seq"] == seq

        expected = {"wrong_type": 1}
        for kind in [*KINDS.values(), *JUNK_NOTIFICATIONS.values()]:
            expected[kind] = expected.get(kind, 0) + 1
        errors = stats(service)["feed_errors"]
        assert {kind: errors.get(kind) for kind in expected} == expected
        assert service.ready().status_code == 200

        for topic in ["string", *BAD_HASHES]:
            for suffix in ("", "/image"):
                response = httpx.get(f"{service.url}api/topics/{topic}{suffix}")
                assert response.status_code == 409, (topic, response.text)
                assert f"topic '{topic}' cannot be used" in response.json()["detail"]
        for topic in ("lying-type", "crlf-type", "latin-type"):
            response = httpx.get(f"{service.url}api/topics/{topic}/image")
            assert response.status_code == 200
            assert response.headers["content-type"] == "image/png"
            assert "x-injected" not in response.headers
            assert response.content == png("hostile")
        topics = httpx.get(service.url + "api/topics").json()
        assert sorted(t["topic"] for t in topics) == [
            "crlf-type", "good", "latin-type", "lying-type",
        ]  # fmt: skip


async def test_a_publish_over_unusable_data_is_refused_with_the_reason(
    service: RunningService, publisher: Publisher, raw: redis.Redis, settings: Settings
) -> None:
    keys = settings.keys
    raw.hset(keys.topic("overflow"), mapping=fields(seq=2**63 - 1))
    raw.hset(keys.topic("words"), mapping=fields(seq="twelve"))
    raw.set(keys.topic("string"), "1")
    raw.set(keys.history("history-string"), "1")
    raw.hset(keys.topic("padded"), mapping=fields(seq="0123"))
    expected = {
        "overflow": "seq of .* is 9223372036854775807, not an integer from 0 to 2\\^53-2",
        "words": "seq of .* is twelve",
        "padded": "seq of .* is 0123",
        "string": "holds a string, not a hash",
        "history-string": "history:{history-string} holds a string, not a hash",
    }
    async with AsyncPublisher(settings.redis_url, prefix=keys.prefix) as async_publisher:
        for topic, reason in expected.items():
            with pytest.raises(CorruptTopicError, match=reason) as refused:
                publisher.publish(topic, "e", png())
            assert refused.value.topic == topic
            with pytest.raises(CorruptTopicError, match=reason):
                await async_publisher.publish(topic, "e", png())
            response = httpx.post(
                f"{service.url}api/topics/{topic}", params={"experiment": "e"}, content=png()
            )
            assert response.status_code == 409
            assert f"topic '{topic}' cannot be used" in response.json()["detail"]
        with pytest.raises(CorruptTopicError, match="holds a string, not a hash"):
            await async_publisher.grab("string")
    with pytest.raises(CorruptTopicError, match="seq 'twelve' is not an integer"):
        publisher.grab("words")
    # Nothing was overwritten, and other topics publish as usual.
    assert raw.get(keys.topic("string")) == b"1"
    assert raw.hget(keys.topic("overflow"), "seq") == str(2**63 - 1).encode()
    assert publisher.publish("fine", "e", png()) == 1


async def test_unusable_history_entries_are_skipped_and_counted(
    service: RunningService, publisher: Publisher, raw: redis.Redis, settings: Settings
) -> None:
    for n in range(1, 5):
        publisher.publish("hist", "e", png(str(n)))
    history = settings.keys.history("hist")
    raw.hset(history, "meta:2", "[" * 5000)
    entry = json.loads(raw.hget(history, "meta:3") or b"")
    raw.hset(history, "meta:3", json.dumps({**entry, "content_type": "text/html"}))
    raw.hset(history, "image:1", b"<script>window.pwned = 1</script>")
    wait_for(lambda: httpx.get(service.url + "api/topics/hist").json().get("seq") == 4, "seq 4")

    listed = httpx.get(service.url + "api/topics/hist/history")
    assert [entry["seq"] for entry in listed.json()] == [4, 1]
    refused = httpx.get(service.url + "api/topics/hist/history/1/image")
    assert refused.status_code == 409 and "not a PNG" in refused.json()["detail"]
    assert httpx.get(service.url + "api/topics/hist/history/4/image").content == png("4")
    errors = stats(service)["feed_errors"]
    assert (errors["invalid_history"], errors["not_an_image"]) == (2, 1)


async def test_topics_deleted_without_a_notification_disappear(
    settings: Settings, publisher: Publisher, raw: redis.Redis
) -> None:
    quick = Settings(redis_url=settings.redis_url, prefix=settings.prefix, reconcile_interval=0.5)
    with run_service(quick) as service:
        async with connect(service.ws_url) as ws:
            await receive(ws, "sync")
            publisher.publish("deleted", "e", png("a"))
            publisher.publish("kept", "e", png("b"))
            await receive_image(ws, "kept")
            raw.delete(settings.keys.topic("deleted"))  # no notification
            assert await receive(ws, "expired") == {"type": "expired", "topic": "deleted"}
        assert httpx.get(service.url + "api/topics/deleted").status_code == 404
        assert httpx.get(service.url + "api/topics/kept").status_code == 200


async def test_flushall_empties_the_service() -> None:
    with EmbeddedRedis() as server:  # FLUSHALL must not touch the shared test server
        settings = Settings(redis_url=server.url, reconcile_interval=0.5)
        with run_service(settings) as service, Publisher(server.url) as publisher:
            async with connect(service.ws_url) as ws:
                await receive(ws, "sync")
                publisher.publish("one", "e", png("1"))
                publisher.publish("two", "e", png("2"))
                await receive_image(ws, "two")
                publisher.redis.flushall()
                gone = {(await receive(ws, "expired"))["topic"] for _ in range(2)}
                assert gone == {"one", "two"}
            assert httpx.get(service.url + "api/topics").json() == []
            assert service.ready().status_code == 200


async def test_a_black_holed_subscription_turns_health_red_then_recovers(
    settings: Settings, publisher: Publisher
) -> None:
    with TcpProxy(redis_port(settings)) as proxy:
        through = Settings(redis_url=proxy.url(), prefix=settings.prefix, keepalive_interval=1.0)
        with run_service(through) as service:
            async with connect(service.ws_url) as ws:
                await receive(ws, "sync")
                publisher.publish("counter", "e", png("1"))
                await receive_image(ws, "counter")
                assert service.ready().json()["subscription_proof_age"] < 3.0

                # As a NAT does to an idle connection: the subscription silently stops.
                assert proxy.blackhole(lambda head: b"SUBSCRIBE" in head) == 1
                for n in range(2, 6):
                    last = publisher.publish("counter", "e", png(str(n)))

                def red() -> str | None:
                    response = service.ready()
                    return response.status_code == 503 and response.json()["reason"]

                reason = await asyncio.to_thread(wait_for, red, "readyz to turn 503")
                assert "no proof that the update subscription delivers" in str(reason)
                await asyncio.to_thread(
                    wait_for, lambda: service.ready().status_code == 200, "readyz back to 200"
                )
                header, data = await receive_image(ws, "counter")
                assert (header["seq"], data) == (last, png("5"))  # caught up, latest only
            assert stats(service)["feed_errors"]["subscription_stale"] >= 1


async def test_history_routes_answer_503_while_redis_is_down(prefix: str) -> None:
    server = EmbeddedRedis().start()
    try:
        with (
            run_service(Settings(redis_url=server.url, prefix=prefix)) as service,
            Publisher(server.url, prefix=prefix) as publisher,
        ):
            publisher.publish("h", "e", png("1"))
            publisher.publish("h", "e", png("2"))
            wait_for(lambda: httpx.get(service.url + "api/topics/h").status_code == 200, "h")
            server.stop()
            for path in ("api/topics/h/history", "api/topics/h/history/1/image", "api/topics/new"):
                response = httpx.get(service.url + path)
                assert response.status_code == 503, (path, response.text)
                assert "cannot reach Redis" in response.json()["detail"]
            # What is in memory is still served.
            assert httpx.get(service.url + "api/topics/h/history/2/image").content == png("2")
    finally:
        server.stop()


async def test_read_your_writes_over_http(settings: Settings) -> None:
    unlimited = Settings(
        redis_url=settings.redis_url, prefix=settings.prefix, publish_rate=1e6, publish_burst=10**6
    )
    with run_service(unlimited) as service:
        await _post_then_get(service)


async def _post_then_get(service: RunningService) -> None:
    stop = asyncio.Event()

    async def load() -> None:  # other publishers keep the feed busy meanwhile
        async with AsyncPublisher(service.settings.redis_url, prefix=service.settings.prefix) as p:
            n = 0
            while not stop.is_set():
                n += 1
                await p.publish(f"noise/{n % 20}", "e", png(str(n)))

    noise = asyncio.create_task(load())
    try:
        async with httpx.AsyncClient(base_url=service.url) as http:
            for n in range(200):
                topic = f"ryw/{n % 50}"  # new topics, then updates of them
                posted = await http.post(
                    f"api/topics/{topic}", params={"experiment": "e"}, content=png(str(n))
                )
                assert posted.status_code == 201, posted.text
                seq = posted.json()["seq"]
                got = await http.get(f"api/topics/{topic}")
                assert got.status_code == 200 and got.json()["seq"] == seq, (n, got.text)
                image = await http.get(f"api/topics/{topic}/image")
                assert image.content == png(str(n))
    finally:
        stop.set()
        await noise


async def test_a_publish_with_no_answer_says_it_may_have_been_stored(settings: Settings) -> None:
    with TcpProxy(redis_port(settings)) as proxy:
        impatient = Settings(redis_url=proxy.url(), prefix=settings.prefix, redis_timeout=0.5)
        with run_service(impatient) as service:
            url = f"{service.url}api/topics/unanswered"
            assert httpx.post(url, params={"experiment": "e"}, content=png("1")).status_code == 201
            # A connection that made a round trip: the publish below goes out on it. (On a new
            # one, the lost replies would be those of the handshake: 503, nothing sent.)
            assert service.ready().status_code == 200
            # Redis gets and runs every command, but its replies are lost on the way back.
            with proxy.losing_replies(spare=lambda head: b"SUBSCRIBE" in head):
                response = httpx.post(url, params={"experiment": "e"}, content=png("2"))
            assert response.status_code == 504, response.text
            assert "may have been stored" in response.json()["detail"]
            # It was, and the service learns it from the notification.
            wait_for(lambda: httpx.get(url + "/image").content == png("2"), "the image")
            assert httpx.get(url).json()["seq"] == 2


async def test_retry_buffer_drops_what_redis_refuses_and_flush_returns(
    settings: Settings, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    keys = settings.keys
    with TcpProxy(redis_port(settings)) as proxy:
        async with AsyncPublisher(proxy.url(), prefix=keys.prefix, retry_buffer=4) as publisher:
            with proxy.refusing():
                assert await publisher.publish("rb/ok", "e", png("ok")) is None
                assert await publisher.publish("rb/bad", "e", png("bad")) is None
                raw.set(keys.topic("rb/bad"), "not a hash")  # appears while Redis is away
            async with asyncio.timeout(15):
                await publisher.flush()
            assert publisher.dropped == {"rb/bad": 1}
            assert (await publisher.grab("rb/ok")).data == png("ok")
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1
    assert "'rb/bad'" in dropped[0] and "holds a string, not a hash" in dropped[0]


def test_junk_cannot_flood_the_log_or_grow_the_memory(
    settings: Settings, publisher: Publisher, raw: redis.Redis
) -> None:
    keys = settings.keys
    port = free_port()
    with serve(*cli_args(settings, "--port", str(port)), ELOG_RECONCILE_INTERVAL="0.5") as server:
        base = f"http://127.0.0.1:{port}/"
        wait_for(lambda: http_status(base + "readyz") == 200, "the service subprocess")
        service = psutil.Process(server.process.pid)
        baseline = service.memory_info().rss
        junk = raw.pipeline(transaction=False)
        for n in range(30_000):
            junk.publish(keys.channel, json.dumps({"topic": f"bad//{n}"}) if n % 2 else f"[{n}")
        junk.execute()
        huge_name = "x" * 8 * 2**20
        raw.publish(keys.channel, json.dumps({"topic": huge_name}))
        raw.hset(f"{keys.prefix}topic:{{{huge_name}}}", mapping=fields())
        # Values far larger than any image, never announced: found by the reconciliation.
        for n in range(3):
            raw.hset(keys.topic(f"fat/{n}"), mapping=fields(digest=b"0" * 30 * 2**20))
        publisher.publish("fat-history", "e", png())
        raw.hset(keys.topic("fat-history"), "seq", 5)
        raw.hset(
            keys.history("fat-history"),
            mapping={f"meta:{n}": bytes(20 * 2**20) for n in range(2, 6)},
        )
        publisher.publish("after-junk", "e", png("after"))
        wait_for(lambda: http_status(base + "api/topics/after-junk") == 200, "the good topic")
        for _ in range(4):
            assert http_status(base + "api/topics/fat-history/history") == 409

        def counted() -> dict[str, int] | None:
            errors: dict[str, int] = httpx.get(base + "api/stats").json()["feed_errors"]
            notifications = sum(
                errors.get(kind, 0)
                for kind in ("malformed_notification", "invalid_topic", "oversized_notification")
            )
            done = errors.get("invalid_key", 0) >= 1 and errors.get("too_large", 0) >= 7
            return errors if done and notifications >= 30_001 else None

        errors = wait_for(counted, "every piece of junk to be counted")
        assert isinstance(errors, dict)
        assert (
            errors["malformed_notification"],
            errors["invalid_topic"],
            errors["oversized_notification"],
        ) == (15_000, 15_000, 1)
        grown = service.memory_info().rss - baseline
        assert grown < 64 * 2**20, f"RSS grew {grown >> 20} MiB"
        assert service.is_running() and http_status(base + "readyz") == 200
        warnings = [line for line in server.drain() if line.startswith("WARNING")]
    # At most 10 lines per kind and minute, none longer than a screenful.
    assert 4 <= len(warnings) <= 40, "".join(warnings)
    assert max(len(line) for line in warnings) < 1000


def test_history_trimming_is_bounded_whatever_seq_and_history_hold(
    publisher: Publisher, raw: redis.Redis, settings: Settings
) -> None:
    keys = settings.keys
    publisher.publish("gap", "e", png("1"))
    # A seq far ahead of the kept history, and a history claiming to start at 1: trimming
    # one seq at a time would keep Redis busy for centuries.
    raw.hset(keys.topic("gap"), "seq", 2**53 - 10)
    raw.hset(keys.history("gap"), mapping={"first": 1, "bytes": 0})
    assert publisher.publish("gap", "e", png("2")) == 2**53 - 9
    assert publisher.publish("gap", "e", png("3")) == 2**53 - 8
    kept = sorted(k for k in raw.hkeys(keys.history("gap")) if k.startswith(b"meta:"))
    assert kept == [f"meta:{2**53 - 9}".encode(), f"meta:{2**53 - 8}".encode()]  # 1 is too old
    with Publisher(settings.redis_url, prefix=keys.prefix, history_length=2) as short:
        short.publish("gap", "e", png("4"))
    kept = sorted(k for k in raw.hkeys(keys.history("gap")) if k.startswith(b"meta:"))
    assert kept == [f"meta:{2**53 - 8}".encode(), f"meta:{2**53 - 7}".encode()]
    assert raw.hget(keys.history("gap"), "first") == str(2**53 - 8).encode()

    # A history far longer than any this script keeps is not ours: it starts again.
    raw.hset(keys.history("gap"), mapping={f"junk:{n}": "x" for n in range(25_000)})
    assert publisher.publish("gap", "e", png("5")) == 2**53 - 6
    assert raw.hlen(keys.history("gap")) == 5  # first, bytes, limits, meta:N, image:N


async def test_read_your_writes_after_the_topic_restarted_unnoticed(settings: Settings) -> None:
    with TcpProxy(redis_port(settings)) as proxy:
        through = Settings(redis_url=proxy.url(), prefix=settings.prefix)
        with run_service(through) as service:
            url = f"{service.url}api/topics/restarted"
            for n in range(1, 4):
                posted = httpx.post(url, params={"experiment": "e"}, content=png(str(n)))
                assert posted.json()["seq"] == n
            # The service hears nothing more, and the topic starts again from 1.
            assert proxy.blackhole(lambda head: b"SUBSCRIBE" in head) == 1
            with redis.Redis.from_url(str(settings.redis_url)) as raw:
                raw.delete(settings.keys.topic("restarted"), settings.keys.history("restarted"))
            posted = httpx.post(url, params={"experiment": "e"}, content=png("new"))
            assert posted.status_code == 201 and posted.json()["seq"] == 1
            assert httpx.get(url).json()["seq"] == 1
            assert httpx.get(url + "/image").content == png("new")


async def test_a_connection_lost_after_sending_is_an_unknown_outcome_never_resent(
    settings: Settings, raw: redis.Redis
) -> None:
    keys = settings.keys
    with TcpProxy(redis_port(settings)) as proxy:
        through = Settings(redis_url=proxy.url(), prefix=keys.prefix)
        with run_service(through) as service:
            url = f"{service.url}api/topics/hung-up"
            assert httpx.post(url, params={"experiment": "e"}, content=png("1")).status_code == 201
            assert service.ready().status_code == 200  # a pooled connection made a round trip
            with proxy.hanging_up(spare=lambda head: b"SUBSCRIBE" in head):
                response = httpx.post(url, params={"experiment": "e"}, content=png("2"))
            assert response.status_code == 504, response.text
            assert "may have been stored" in response.json()["detail"]
        assert raw.hget(keys.topic("hung-up"), "seq") == b"2"

        async with AsyncPublisher(proxy.url(), prefix=keys.prefix, retry_buffer=4) as publisher:
            assert await publisher.publish("hung-up", "e", png("3")) == 3  # connected
            with (
                proxy.hanging_up(spare=lambda head: False),
                pytest.raises(PublishOutcomeUnknownError),
            ):
                await publisher.publish("hung-up", "e", png("4"))
            await publisher.flush()
            assert publisher.dropped == {}
    assert raw.hget(keys.topic("hung-up"), "seq") == b"4"  # stored once, never resent


def test_a_peer_that_is_not_redis_gets_503_everywhere(prefix: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def answer_http() -> None:  # e.g. a web server on the port the URL names
            while True:
                try:
                    client, _ = listener.accept()
                except OSError:
                    return
                with client:
                    with contextlib.suppress(OSError):
                        client.recv(65536)
                        client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        threading.Thread(target=answer_http, daemon=True).start()
        settings = Settings(redis_url=f"redis://127.0.0.1:{port}/0", prefix=prefix)
        with run_service(settings, wait_healthy=False) as service:
            for method, path in [
                ("GET", "readyz"),
                ("GET", "api/topics/x"),
                ("GET", "api/topics/x/image"),
                ("GET", "api/topics/x/history"),
                ("GET", "api/topics/x/history/1/image"),
                ("POST", "api/topics/x?experiment=e"),
            ]:
                response = httpx.request(method, service.url + path, content=png())
                assert response.status_code == 503, (path, response.text)


async def test_wrong_credentials_are_refused_not_retried(prefix: str) -> None:
    with EmbeddedRedis(password="right") as server:
        url = f"redis://:wrong@127.0.0.1:{server.port}/0"
        async with AsyncPublisher(url, prefix=prefix, retry_buffer=4) as publisher:
            with pytest.raises(RedisRefusedError, match="refused"):
                await publisher.publish("t", "e", png())
            await asyncio.wait_for(publisher.flush(), DEADLINE)  # nothing waits


async def test_a_user_who_may_not_publish_keeps_health_red_and_stores_nothing(
    prefix: str,
) -> None:
    with EmbeddedRedis() as server:
        admin = redis.Redis.from_url(server.url)
        admin.execute_command(
            "ACL", "SETUSER", "viewer", "on", ">pw", "~*", "&*", "+@all", "-publish"
        )
        url = f"redis://viewer:pw@127.0.0.1:{server.port}/0"
        settings = Settings(redis_url=url, prefix=prefix, keepalive_interval=0.2)
        with run_service(settings, wait_healthy=False) as service:
            # Sampled for a while: it must never pass for healthy.
            for _ in range(20):
                response = service.ready()
                assert response.status_code == 503
                time.sleep(0.1)
            assert "publish" in response.json()["reason"].lower()
            posted = httpx.post(service.url + "api/topics/t?experiment=e", content=png())
            assert posted.status_code == 503 and "refused" in posted.json()["detail"]
        assert not admin.exists(Settings(prefix=prefix).keys.topic("t"))
        admin.close()


async def test_a_flood_of_announcements_cannot_hold_up_real_updates(
    settings: Settings, publisher: Publisher, raw: redis.Redis
) -> None:
    quick = Settings(redis_url=settings.redis_url, prefix=settings.prefix, reconcile_interval=0.5)
    keys = settings.keys
    with run_service(quick) as service:
        async with connect(service.ws_url) as ws:
            await receive(ws, "sync")
            # Valid names of topics that do not exist, far more than the feed queues.
            flood = raw.pipeline(transaction=False)
            for n in range(4 * MAX_BACKLOG):
                flood.publish(keys.channel, encode_notification(f"nothing/{n}"))
            flood.execute()
            # Hashes nobody announces that can never be shown: read once, then left alone.
            junk = raw.pipeline(transaction=False)
            for n in range(2000):
                junk.hset(keys.topic(f"junk/{n}"), "experiment", "x")
            junk.execute()
            publisher.publish("real", "e", png("real"))
            header, data = await receive_image(ws, "real")
            assert data == png("real")

            def junk_read_once() -> dict[str, int] | None:
                errors: dict[str, int] = stats(service)["feed_errors"]
                return errors if errors.get("invalid_field", 0) >= 2000 else None

            before = await asyncio.to_thread(wait_for, junk_read_once, "the junk to be read")
            publisher.publish("real", "e", png("again"))
            await receive_image(ws, "real")
            for _ in range(3):  # three more reconciliations
                reconnects = stats(service)["redis_reconnects"]
                await asyncio.sleep(0.6)
                assert stats(service)["redis_reconnects"] == reconnects
        errors = stats(service)["feed_errors"]
        assert errors["backlog_overflow"] >= 1
        assert errors["invalid_field"] == before["invalid_field"]  # not read again
        assert service.ready().status_code == 200


async def test_unusable_data_is_read_once_however_often_it_is_asked_for(
    service: RunningService, raw: redis.Redis, settings: Settings
) -> None:
    raw.hset(settings.keys.topic("junk"), mapping=fields(image=b"not an image" * 100_000))
    for _ in range(20):
        response = httpx.get(service.url + "api/topics/junk/image")
        assert response.status_code == 409
    assert stats(service)["feed_errors"]["not_an_image"] == 1


def test_history_from_before_a_restart_is_never_served_as_the_new_topics(
    service: RunningService, publisher: Publisher, raw: redis.Redis, settings: Settings
) -> None:
    keys = settings.keys
    for n in range(1, 4):
        publisher.publish("epochs", "old", png(f"old {n}"))
    raw.delete(keys.topic("epochs"))  # the history is left behind
    with Publisher(settings.redis_url, prefix=keys.prefix, history_length=0) as no_history:
        for n in range(1, 4):
            no_history.publish("epochs", "new", png(f"new {n}"))
    publisher.publish("epochs", "new", png("new 4"))
    wait_for(lambda: httpx.get(service.url + "api/topics/epochs").json().get("seq") == 4, "seq 4")
    entries = httpx.get(service.url + "api/topics/epochs/history").json()
    assert [(e["seq"], e["experiment"]) for e in entries] == [(4, "new")]
    assert httpx.get(service.url + "api/topics/epochs/history/1/image").status_code == 404


def _whole_command(data: bytes) -> int | None:
    """The length of the first whole RESP command (an array of bulk strings) in ``data``."""
    end = data.find(b"\r\n")
    if end < 0:
        return None
    position = end + 2
    for _ in range(int(data[1:end])):
        end = data.find(b"\r\n", position)
        if end < 0:
            return None
        position = end + 2 + int(data[position + 1 : end]) + 2
    return position if position <= len(data) else None


def test_a_peer_speaking_resp_but_not_redis_gets_503_or_504(prefix: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def answer_ok(client: socket.socket) -> None:
            # "+OK" to every whole command, however TCP splits or joins them.
            pending = b""
            with client, contextlib.suppress(OSError):
                while data := client.recv(65536):
                    pending += data
                    while (length := _whole_command(pending)) is not None:
                        pending = pending[length:]
                        client.sendall(b"+OK\r\n")

        def serve() -> None:
            while True:
                try:
                    client, _ = listener.accept()
                except OSError:
                    return
                threading.Thread(target=answer_ok, args=(client,), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()
        settings = Settings(redis_url=f"redis://127.0.0.1:{port}/0", prefix=prefix)
        with run_service(settings, wait_healthy=False) as service:
            assert service.ready().status_code == 503
            for path in ("api/topics/x", "api/topics/x/image", "api/topics/x/history"):
                response = httpx.get(service.url + path)
                assert response.status_code == 503, (path, response.text)
            posted = httpx.post(service.url + "api/topics/x?experiment=e", content=png())
            assert posted.status_code == 504, posted.text


def test_a_giant_seq_in_the_url_is_a_404(service: RunningService, publisher: Publisher) -> None:
    publisher.publish("t", "e", png())
    for digits in (17, 5000):
        response = httpx.get(f"{service.url}api/topics/t/history/{'9' * digits}/image")
        assert response.status_code == 404, digits


async def test_have_names_only_topics_that_are_live(
    service: RunningService, publisher: Publisher
) -> None:
    async with connect(service.ws_url + "?resume=1") as ws:
        # A client may claim anything; only live topics are taken at its word.
        await ws.send(json.dumps({"type": "subscribe", "have": {"later": 1}}))
        assert await receive(ws, "sync") == {"type": "sync", "topics": []}
        publisher.publish("later", "e", png("first"))
        header, data = await receive_image(ws, "later")
        assert (header["seq"], data) == (1, png("first"))
