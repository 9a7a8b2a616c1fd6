"""Per-topic history: kept by the publish script, bounded in count and bytes, served lazily."""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from pathlib import Path

import httpx
import pytest
import redis
from support import RunningService, png, run_service, wait_for

from elog_stream import Publisher
from elog_stream.config import Settings
from elog_stream.errors import SettingsError
from elog_stream.protocol import PUBLISH_SCRIPT, READ_SCRIPT, Limits, publish_call

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
    script, read_script = re.findall(r"```lua\n(.*?)```", doc, re.S)[:2]  # then the logbook's
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
        600,
        "experiment", "E", "description", "D", "content_type", "image/png",
        "updated_at", f"{now:.6f}", "digest", digest, "pngimage", image,
    )  # fmt: skip
    assert seq == 1
    wait_for_seq(service, "T/eval", 1)
    assert httpx.get(f"{service.url}api/topics/T/eval/image").content == image
    assert [e["seq"] for e in history(service, "T/eval")] == [1]
    assert httpx.get(f"{service.url}api/topics/T/eval/history/1/image").content == image
    # The earlier form, without the history seconds, still works: no time limit.
    seq = raw.eval(
        script, 2, f"{settings.prefix}topic:{{T/eval}}", f"{settings.prefix}history:{{T/eval}}",
        f"{settings.prefix}updates", json.dumps({"topic": "T/eval"}), 3600, 50, 52428800,
        json.dumps({**meta, "updated_at": now + 3600}), "experiment", "E", "description", "D",
        "content_type", "image/png", "updated_at", f"{now + 3600:.6f}", "digest", digest,
        "pngimage", image,
    )  # fmt: skip
    assert seq == 2
    wait_for_seq(service, "T/eval", 2)
    assert [e["seq"] for e in history(service, "T/eval")] == [2, 1]


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


# --- kept by time (ELOG_HISTORY_SECONDS) -------------------------------------------------------


def publish_at(raw: redis.Redis, settings: Settings, limits: Limits, topic: str, now: float) -> int:
    """Publish through the protocol layer with a chosen publish time (no waiting for a clock)."""
    call = publish_call(
        settings.keys, limits, topic, "e", f"at {now}", png(f"{topic}{now}"), 10**7, now
    )
    seq = raw.eval(PUBLISH_SCRIPT, len(call.keys), *call.keys, *call.args)
    assert isinstance(seq, int)
    return seq


def kept(raw: redis.Redis, settings: Settings, topic: str) -> list[int]:
    names = raw.hkeys(settings.keys.history(topic))
    return sorted(int(name[5:]) for name in names if name.startswith(b"meta:"))


T0 = 1_764_000_000.0


def test_history_kept_by_time_keeps_what_was_published_within_the_window(
    settings: Settings,
) -> None:
    raw = redis.Redis.from_url(settings.redis_url)
    limits = Limits(history_length=50, history_seconds=10)
    for step in range(6):  # every 3 s: T0, T0+3, ... T0+15
        publish_at(raw, settings, limits, "t/plot", T0 + 3 * step)
        if step == 4:  # T0+12: T0+2 and later are kept
            assert kept(raw, settings, "t/plot") == [2, 3, 4, 5]
    # T0+15: the window starts at T0+5
    assert kept(raw, settings, "t/plot") == [3, 4, 5, 6]
    history_key = settings.keys.history("t/plot")
    assert raw.hget(history_key, "first") == b"3"
    image_fields = [f"image:{seq}" for seq in (3, 4, 5, 6)]
    assert int(raw.hget(history_key, "bytes")) == sum(
        raw.hstrlen(history_key, f) for f in image_fields
    )
    limits_field = json.loads(raw.hget(history_key, "limits"))
    assert limits_field == {"length": 50, "bytes": limits.history_bytes, "seconds": 10}


def test_the_newest_image_is_always_kept_and_a_clock_stepping_back_loses_nothing(
    settings: Settings,
) -> None:
    raw = redis.Redis.from_url(settings.redis_url)
    limits = Limits(history_seconds=1)
    publish_at(raw, settings, limits, "gap", T0)
    publish_at(raw, settings, limits, "gap", T0 + 0.5)
    assert kept(raw, settings, "gap") == [1, 2]
    publish_at(raw, settings, limits, "gap", T0 + 3600)  # an hour later: only the newest
    assert kept(raw, settings, "gap") == [3]
    assert raw.hget(settings.keys.history("gap"), "first") == b"3"
    publish_at(raw, settings, limits, "gap", T0 + 10)  # the clock stepped back
    assert kept(raw, settings, "gap") == [3, 4]


def test_count_bytes_and_time_limits_apply_together(settings: Settings) -> None:
    raw = redis.Redis.from_url(settings.redis_url)
    by_count = Limits(history_length=3, history_seconds=3600)
    for step in range(5):
        publish_at(raw, settings, by_count, "count", T0 + step)
    assert kept(raw, settings, "count") == [3, 4, 5]

    size = len(png(f"bytes{T0}"))
    by_bytes = Limits(history_bytes=int(size * 2.5), history_seconds=3600)
    for step in range(5):
        publish_at(raw, settings, by_bytes, "bytes", T0 + step)
    assert kept(raw, settings, "bytes") == [4, 5]

    # Slow publishes go by time, fast ones by count.
    combined = Limits(history_length=3, history_seconds=4)
    for step in range(4):
        publish_at(raw, settings, combined, "both", T0 + 10 * step)
    assert kept(raw, settings, "both") == [4]
    for step in range(1, 5):
        publish_at(raw, settings, combined, "both", T0 + 30 + step)
    assert kept(raw, settings, "both") == [6, 7, 8]


def test_history_seconds_must_be_a_number_of_seconds(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = redis.Redis.from_url(settings.redis_url)
    call = publish_call(settings.keys, Limits(), "bad", "e", "", png("x"), 10**7, T0)
    for seconds in ("-1", "nan", "inf"):
        args = [*call.args[:6], seconds, *call.args[7:]]
        with pytest.raises(redis.ResponseError, match="history seconds must be a number >= 0"):
            raw.eval(PUBLISH_SCRIPT, 2, *call.keys, *args)
    assert not raw.exists(settings.keys.topic("bad"), settings.keys.history("bad"))
    monkeypatch.setenv("ELOG_HISTORY_SECONDS", "-5")
    with pytest.raises(SettingsError, match="ELOG_HISTORY_SECONDS='-5': expected a number"):
        Settings.from_env()
    monkeypatch.setenv("ELOG_HISTORY_SECONDS", "600")
    assert Settings.from_env().limits.history_seconds == 600
    with pytest.raises(SettingsError, match="history_seconds=inf"):
        Settings(history_seconds=math.inf)


def test_the_service_keeps_history_by_its_own_seconds_and_tells_the_limits(
    settings: Settings,
) -> None:
    limited = settings.replace(history_length=20, history_bytes=10**6, history_seconds=600)
    with run_service(limited) as service:
        for i in range(1, 3):
            response = httpx.post(
                f"{service.url}api/topics/s/plot", params={"experiment": "e"}, content=png(f"{i}")
            )
            assert response.status_code == 201, response.text
        response = httpx.get(f"{service.url}api/topics/s/plot/history")
        assert [e["seq"] for e in response.json()] == [2, 1]
        headers = {
            k: response.headers.get(f"elog-history-{k}") for k in ("length", "bytes", "seconds")
        }
        assert headers == {"length": "20", "bytes": "1000000", "seconds": "600"}

        # A publisher that keeps no history: the current image only.
        with Publisher(settings.redis_url, prefix=settings.prefix, history_length=0) as publisher:
            publisher.publish("s/none", "e", png("only"))
        wait_for_seq(service, "s/none", 1)
        response = httpx.get(f"{service.url}api/topics/s/none/history")
        assert response.headers["elog-history-length"] == "1"

        # Limits that are not ours: the history is still served, without them.
        raw = redis.Redis.from_url(settings.redis_url)
        raw.hset(settings.keys.history("s/plot"), "limits", '{"length": "many"}')
        response = httpx.get(f"{service.url}api/topics/s/plot/history")
        assert [e["seq"] for e in response.json()] == [2, 1]
        assert "elog-history-length" not in response.headers
        stats = httpx.get(f"{service.url}api/stats").json()
        assert stats["feed_errors"].get("invalid_history", 0) >= 1


def test_a_publisher_passes_its_history_seconds(settings: Settings) -> None:
    with Publisher(settings.redis_url, prefix=settings.prefix, history_seconds=0.25) as publisher:
        publisher.publish("p/plot", "e", png("1"))
        raw = redis.Redis.from_url(settings.redis_url)
        limits = json.loads(raw.hget(settings.keys.history("p/plot"), "limits"))
        assert limits["seconds"] == 0.25
