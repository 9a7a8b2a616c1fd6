"""Per-topic history: kept by the publish script, bounded in count and bytes, served lazily."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import httpx
import redis
from support import RunningService, png, run_service, wait_for

from elog_stream import Publisher
from elog_stream.config import Settings
from elog_stream.protocol import PUBLISH_SCRIPT, READ_SCRIPT

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def history(service: RunningService, topic: str) -> list[dict]:
    response = httpx.get(f"{service.url}api/topics/{topic}/history")
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_seq(service: RunningService, topic: str, seq: int) -> None:
    def live() -> bool:
        response = httpx.get(f"{service.url}api/topics/{topic}")
        return response.status_code == 200 and response.json()["seq"] == seq

    wait_for(live, f"{topic} seq {seq}")


def test_history_keeps_the_last_n_newest_first(settings: Settings) -> None:
    kept = Settings(redis_url=settings.redis_url, prefix=settings.prefix, history_length=3)
    with run_service(kept) as service:
        with Publisher(kept.redis_url, prefix=kept.prefix, history_length=3) as publisher:
            for i in range(1, 6):
                publisher.publish("h/plot", "e", png(f"v{i}"), f"version {i}")
        wait_for_seq(service, "h/plot", 5)
        entries = history(service, "h/plot")
        assert [(e["seq"], e["description"]) for e in entries] == [
            (5, "version 5"),
            (4, "version 4"),
            (3, "version 3"),
        ]
        assert entries[1]["digest"] == hashlib.sha256(png("v4")).hexdigest()
        assert entries[1]["size"] == len(png("v4"))
        old = httpx.get(f"{service.url}api/topics/h/plot/history/4/image")
        assert old.status_code == 200 and old.content == png("v4")
        assert old.headers["etag"] == f'"{entries[1]["digest"]}"'
        gone = httpx.get(f"{service.url}api/topics/h/plot/history/2/image")
        assert gone.status_code == 404 and "not kept" in gone.json()["detail"]
        assert httpx.get(f"{service.url}api/topics/nope/history").status_code == 404


def test_history_is_bounded_in_bytes_and_expires_with_the_topic(settings: Settings) -> None:
    size = len(png("a", size=(200, 200)))
    with Publisher(
        settings.redis_url, prefix=settings.prefix, history_bytes=int(size * 2.5), ttl=30
    ) as publisher:
        for text in "abcde":
            publisher.publish("bytes", "e", png(text, size=(200, 200)))
    raw = redis.Redis.from_url(settings.redis_url)
    history_key = settings.keys.history("bytes")
    kept = sorted(k for k in raw.hkeys(history_key) if k.startswith(b"image:"))
    assert kept == [b"image:4", b"image:5"]
    assert raw.hget(history_key, "first") == b"4"
    assert int(raw.hget(history_key, "bytes")) == sum(raw.hstrlen(history_key, k) for k in kept)
    assert 0 < raw.ttl(history_key) <= 30
    assert abs(raw.ttl(history_key) - raw.ttl(settings.keys.topic("bytes"))) <= 1


def test_history_restarts_when_the_topic_restarts(publisher: Publisher, settings: Settings) -> None:
    raw = redis.Redis.from_url(settings.redis_url)
    publisher.publish("again", "e", png("1"))
    publisher.publish("again", "e", png("2"))
    raw.delete(settings.keys.topic("again"))  # as if the topic hash expired first
    assert publisher.publish("again", "e", png("new")) == 1
    assert raw.hget(settings.keys.history("again"), "first") == b"1"
    assert not raw.hexists(settings.keys.history("again"), "image:2")


def test_the_documented_script_is_the_one_used_and_works(
    service: RunningService, settings: Settings
) -> None:
    doc = DOC.read_text()
    script, read_script = re.findall(r"```lua\n(.*?)```", doc, re.S)
    assert (script, read_script) == (PUBLISH_SCRIPT, READ_SCRIPT)
    # Publish with EVAL and arguments exactly as the doc lists them, without the library.
    image = png("eval")
    digest = hashlib.sha256(image).hexdigest()
    now = time.time()
    raw = redis.Redis.from_url(settings.redis_url)
    meta = {"experiment": "E", "description": "D", "content_type": "image/png",
            "updated_at": now, "digest": digest, "size": len(image)}  # fmt: skip
    seq = raw.eval(
        script,
        2,
        f"{settings.prefix}topic:{{T/eval}}",
        f"{settings.prefix}history:{{T/eval}}",
        f"{settings.prefix}updates",
        json.dumps({"topic": "T/eval"}),
        3600,
        50,
        52428800,
        json.dumps(meta),
        "experiment", "E", "description", "D", "content_type", "image/png",
        "updated_at", f"{now:.6f}", "digest", digest, "pngimage", image,
    )  # fmt: skip
    assert seq == 1
    wait_for_seq(service, "T/eval", 1)
    assert httpx.get(f"{service.url}api/topics/T/eval/image").content == image
    assert [e["seq"] for e in history(service, "T/eval")] == [1]
    assert httpx.get(f"{service.url}api/topics/T/eval/history/1/image").content == image


def test_a_publisher_without_history_still_has_its_current_image_listed(
    service: RunningService, settings: Settings
) -> None:
    with Publisher(settings.redis_url, prefix=settings.prefix, history_length=0) as publisher:
        publisher.publish("no-history", "e", png("only"))
    wait_for_seq(service, "no-history", 1)
    assert [e["seq"] for e in history(service, "no-history")] == [1]
    current = httpx.get(f"{service.url}api/topics/no-history/history/1/image")
    assert current.content == png("only")
    assert not redis.Redis.from_url(settings.redis_url).exists(settings.keys.history("no-history"))
