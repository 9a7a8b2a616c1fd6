"""What a WebSocket client sends is untrusted: malformed, deep, large or too frequent messages
get an error frame (or a documented close code) and cost the service bounded time and memory."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest
from support import (
    DEADLINE,
    RunningService,
    ServeProcess,
    cli_args,
    http_status,
    png,
    receive,
    receive_image,
    serve,
    wait_for,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from elog_stream import AsyncPublisher, Publisher
from elog_stream.config import Settings
from elog_stream.embedded import free_port
from elog_stream.hub import MAX_PATTERNS_LENGTH, Filter
from elog_stream.protocol import MAX_NAME_LENGTH
from elog_stream.records import TopicImage
from elog_stream.viewer_socket import _first_to_finish

RATE_LIMITED = "rate limit"


def image(topic: str, experiment: str = "e") -> TopicImage:
    return TopicImage(topic, experiment, "", 1, 1.0, "image/png", "d", b"x")


def subscribe(topics: list[str] | None = None, **fields: Any) -> str:
    return json.dumps({"type": "subscribe", "topics": topics or [], **fields})


async def answer(ws: ClientConnection, message: str | bytes) -> dict[str, Any]:
    """Send ``message`` and return its answer (``sync`` or ``error``), resending it while the
    answer is that the connection is over its rate limit."""
    async with asyncio.timeout(DEADLINE):
        while True:
            await ws.send(message)
            while True:
                frame = await ws.recv()
                if isinstance(frame, str) and json.loads(frame)["type"] in ("sync", "error"):
                    reply = json.loads(frame)
                    break
            if RATE_LIMITED not in reply.get("message", ""):
                return reply
            await asyncio.sleep(0.1)  # pacing: the bucket refills at 5 per second


def test_filter_matches_exactly_as_fnmatch() -> None:
    patterns = [
        "det/*",
        "a?c",
        "run[0-9]/sum",
        "run[!0-9]/x",
        "c++/plot",
        "fit(1)",
        "x.y",
        "^$|\\",
        "a+b*",
        "[",
        "tail[",
        "*[aA][bB]*",
    ]
    topics = [
        "det/sum",
        "det/",
        "abc",
        "ac",
        "run1/sum",
        "runx/sum",
        "runx/x",
        "run1/x",
        "c++/plot",
        "cc/plot",
        "fit(1)",
        "fit1",
        "x.y",
        "xzy",
        "^$|\\",
        "a+bcd",
        "aab",
        "[",
        "tail[",
        "tail",
        "xxABxx",
        "line\nbreak/det/*",
    ]
    padding = [f"pad{i}/*/x[0-9]?" for i in range(100 - len(patterns))]
    for chosen in [*([p] for p in patterns), patterns + padding]:
        topic_filter = Filter.parse(chosen)
        for topic in topics:
            expected = any(p == topic or fnmatch.fnmatchcase(topic, p) for p in chosen)
            assert topic_filter.matches(image(topic)) == expected, (chosen, topic)
    by_experiment = Filter.parse(["det/*"], ["cxi", "mfx"])
    assert by_experiment.matches(image("det/a", "mfx"))
    assert not by_experiment.matches(image("det/a", "xpp"))
    assert Filter.parse(None, ["cxi"]).matches(image("anything", "cxi"))


@pytest.mark.parametrize(
    ("topics", "experiments", "error"),
    [
        ("det/*", None, "topics must be a list of strings"),
        ([1], None, "topics must be a list of strings"),
        (None, [None], "experiments must be a list of strings"),
        (["x"] * 101, None, "101 entries, over 100"),
        (None, ["x"] * 101, "101 entries, over 100"),
        (["x" * (MAX_NAME_LENGTH * 4 + 3)], None, "characters, over"),
        (None, ["x" * (MAX_NAME_LENGTH + 1)], "characters, over"),
        ([f"{i:03d}*" + "x" * 96 for i in range(21)], None, "characters of patterns, over"),
    ],
)
def test_filter_parse_refuses_what_would_cost_too_much(
    topics: object, experiments: object, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        Filter.parse(topics, experiments)


def test_filter_limits_fit_what_the_web_viewer_sends() -> None:
    # web/js/filter.js: a 100-character search becomes "*" + "[xX]" * 100 + "*".
    search = "*" + "[xX]" * 100 + "*"
    assert Filter.parse([search]).matches(image("a/" + "X" * 100))
    assert len(search) * 2 < MAX_PATTERNS_LENGTH
    assert Filter.parse(["x" * MAX_NAME_LENGTH] * 100)  # exact names cost no regex


NESTED = [
    "[" * 30_000,
    '{"a":' * 12_000,
    '{"type": "subscribe", "topics": ' + "[" * 30_000,
    '{"type": "subscribe", "have": ' + '{"a":' * 12_000,
]

MALFORMED: list[tuple[str | bytes, str]] = [
    ("not json", "Expecting value"),
    ("", "Expecting value"),
    ("[1, 2]", 'expected {"type": "subscribe"'),
    ('"subscribe"', 'expected {"type": "subscribe"'),
    ("null", 'expected {"type": "subscribe"'),
    ('{"type": 5}', 'expected {"type": "subscribe"'),
    ('{"type": "subscribe", "topics": "a"}', "topics must be a list of strings"),
    ('{"type": "subscribe", "topics": [["a"]]}', "topics must be a list of strings"),
    ('{"type": "subscribe", "experiments": {"a": 1}}', "experiments must be a list"),
    (subscribe([f"t{i}" for i in range(101)]), "101 entries, over 100"),
    (subscribe(["x" * 1000 + "*"]), "characters, over"),
    (subscribe(have=["a"]), "have must map"),
    (subscribe(have={"a": "seven"}), "have must map"),
    (subscribe(have={"a": True}), "have must map"),
    (subscribe(have={"a": 1.5}), "have must map"),
    ('{"type": "subscribe", "have": {"a": 1e999}}', "have must map"),
    ('{"type": "subscribe", "have": {"a": ' + "9" * 5000 + "}}", "digits"),
    (b"\x00\x01", "binary"),
    *((text, "nested too deeply") for text in NESTED),
]


async def test_malformed_input_gets_an_error_frame_and_the_socket_keeps_working(
    service: RunningService, publisher: Publisher
) -> None:
    async with connect(service.ws_url) as ws:
        await receive(ws, "sync")
        for bad, error in MALFORMED:
            reply = await answer(ws, bad)
            assert reply["type"] == "error" and error in reply["message"], (bad[:40], reply)
        assert (await answer(ws, subscribe(["ok/*"]))) == {"type": "sync", "topics": []}
        await asyncio.to_thread(publisher.publish, "no/match", "e", png("no"))
        await asyncio.to_thread(publisher.publish, "ok/still-alive", "e", png("yes"))
        header, data = await receive_image(ws)
        assert (header["topic"], data) == ("ok/still-alive", png("yes"))


async def test_a_hundred_patterns_match_as_documented(
    service: RunningService, publisher: Publisher
) -> None:
    wanted = ["det/sum", "a1c", "run7/sum", "c++/plot", "fit(1)", "q.x"]
    unwanted = ["det", "a12c", "runx/sum", "c+/plot", "fit1", "qzx"]
    patterns = ["det/*", "a?c", "run[0-9]/sum", "c++/plot", "fit(1)", "q.x"]
    patterns += [f"pad{i}/*/x[0-9]?" for i in range(100 - len(patterns))]
    for topic in wanted + unwanted:
        publisher.publish(topic, "e", png(topic))
    wait_for(lambda: len(httpx.get(service.url + "api/topics").json()) == 12, "12 topics")
    async with connect(service.ws_url + "?resume=1") as ws:
        reply = await answer(ws, subscribe(patterns))
        assert reply["type"] == "sync" and sorted(reply["topics"]) == sorted(wanted)
        received = {(await receive_image(ws))[0]["topic"] for _ in wanted}
        assert received == set(wanted)
        await asyncio.to_thread(publisher.publish, "c+/plot", "e", png("still not"))
        await asyncio.to_thread(publisher.publish, "run0/sum", "e", png("new"))
        header, _ = await receive_image(ws)
        assert header["topic"] == "run0/sum"


async def test_have_counts_only_for_live_topics(
    service: RunningService, publisher: Publisher
) -> None:
    have = {f"later/{i}": 1 for i in range(3000)}
    async with connect(service.ws_url + "?resume=1") as ws:
        reply = await answer(ws, subscribe(have=have))
        assert reply == {"type": "sync", "topics": []}
        # Not live when named, so not taken as held: seq 1 of it is sent.
        seq = await asyncio.to_thread(publisher.publish, "later/7", "e", png("later"))
        assert seq == 1
        header, data = await receive_image(ws)
        assert (header["topic"], header["seq"], data) == ("later/7", 1, png("later"))


def stats(service: RunningService) -> dict[str, Any]:
    return httpx.get(service.url + "api/stats").json()


async def test_a_flood_of_subscribes_is_refused_then_closed(
    service: RunningService, publisher: Publisher
) -> None:
    async with connect(service.ws_url) as ws, connect(service.ws_url) as flooder:
        await receive(ws, "sync")
        await receive(flooder, "sync")
        # Over the limit but not for long: refusals, then the connection works again.
        for _ in range(30):
            await ws.send(subscribe(["burst/*"]))
        refusal = await receive(ws, "error")
        assert refusal["message"].startswith(RATE_LIMITED), refusal
        await asyncio.to_thread(publisher.publish, "flood/before", "e", png("before"))
        reply = await answer(ws, subscribe(["flood/*"]))
        while reply["topics"] != ["flood/before"]:  # answers to the burst may still be queued
            reply = await answer(ws, subscribe(["flood/*"]))
        # Published once the filter is in force: answer() may have skipped flood/before's image.
        seq = await asyncio.to_thread(publisher.publish, "flood/after", "e", png("after"))
        header, _ = await receive_image(ws, "flood/after")
        assert header["seq"] == seq

        # Far over the limit: closed with 1008.
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(DEADLINE):
                for _ in range(300):
                    await flooder.send(subscribe(["flood/*"]))
                while True:
                    await flooder.recv()
        assert closed.value.rcvd is not None, closed.value
        assert closed.value.rcvd.code == 1008
        assert "messages per second" in closed.value.rcvd.reason

        # The other viewer is still served.
        seq = await asyncio.to_thread(publisher.publish, "flood/after", "e", png("again"))
        header, _ = await receive_image(ws, "flood/after")
        assert header["seq"] == seq
    wait_for(lambda: stats(service)["viewer_disconnects"].get("flooding") == 1, "the count")


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[str, ServeProcess]]:
    port = free_port()
    with serve(*cli_args(settings, "--port", str(port))) as server:
        base = f"http://127.0.0.1:{port}/"
        wait_for(lambda: http_status(base + "readyz") == 200, "the service subprocess")
        yield base, server


ABUSE_MESSAGES = 300
HAVE_ENTRIES = 5000
RSS_BOUND = 40 * 1024 * 1024


async def test_an_abusive_client_costs_bounded_memory(
    served: tuple[str, ServeProcess], settings: Settings
) -> None:
    """300 subscribes with 5,000 ``have`` entries each (50 KB), every one of them processed
    (at most a burst per connection), while a normal viewer gets every image."""
    base, server = served
    ws_url = base.replace("http", "ws", 1) + "ws"
    process = psutil.Process(server.process.pid)
    live = [f"mem/{i}" for i in range(10)]
    async with (
        AsyncPublisher(settings.redis_url, prefix=settings.prefix) as publisher,
        connect(ws_url) as viewer,
    ):
        await receive(viewer, "sync")
        for topic in live:
            await publisher.publish(topic, "e", png(topic))
            await receive_image(viewer, topic)
        peak = baseline = process.memory_info().rss

        def big_subscribe(n: int) -> str:
            have = {f"g{i}": n for i in range(HAVE_ENTRIES)}  # not live
            have.update(dict.fromkeys(live, 1))
            text = json.dumps({"type": "subscribe", "have": have}, separators=(",", ":"))
            assert len(text) < 64 * 1024
            return text

        async def check_viewer(round: int) -> None:
            nonlocal peak
            peak = max(peak, process.memory_info().rss)
            topic = live[round % len(live)]
            seq = await publisher.publish(topic, "e", png(f"round {round}"))
            header, data = await receive_image(viewer)
            assert (header["topic"], header["seq"], data) == (topic, seq, png(f"round {round}"))

        burst = 10  # within the rate limit: every message is parsed and acted on
        for round in range(ABUSE_MESSAGES // burst):
            async with connect(ws_url + "?resume=1") as ws:
                for n in range(burst):
                    await ws.send(big_subscribe(round * burst + n))
                for _ in range(burst):
                    assert sorted((await receive(ws, "sync"))["topics"]) == sorted(live)
            await check_viewer(round)

        # All at once on one connection: refused (not parsed), then closed.
        with pytest.raises(ConnectionClosed) as closed:
            async with connect(ws_url) as ws, asyncio.timeout(DEADLINE):
                for n in range(ABUSE_MESSAGES):
                    await ws.send(big_subscribe(n))
                while True:
                    await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        await check_viewer(ABUSE_MESSAGES)
        growth = peak - baseline
        assert growth < RSS_BOUND, f"RSS grew {growth >> 20} MiB"


async def waits_for_ever() -> tuple[str, str]:
    await asyncio.Event().wait()
    return "never", ""


@pytest.mark.parametrize("failing", ["here", "there"])
async def test_an_unexpected_error_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture, failing: str
) -> None:
    """The handler closes with 1011 on ``("error", ...)``; no client input is known to provoke
    one, so this checks ``_first_to_finish`` itself, with a coroutine that raises, run in this
    task (``here``: the sender) or in the child task (``there``: the reader)."""

    async def fails() -> tuple[str, str]:
        await asyncio.sleep(0)
        raise KeyError("boom")

    here, there = (fails(), waits_for_ever()) if failing == "here" else (waits_for_ever(), fails())
    with caplog.at_level(logging.ERROR, logger="elog_stream.viewer_socket"):
        assert await _first_to_finish(here, there) == ("error", "KeyError: 'boom'")
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    [record] = caplog.records
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    assert "Traceback" in caplog.text and "in fails" in caplog.text


@pytest.mark.parametrize("when", ["waiting", "stopping"])
async def test_a_cancellation_from_outside_propagates_once_the_child_is_awaited(
    when: str,
) -> None:
    """``_first_to_finish`` stops the coroutine it runs in the calling task by cancelling that
    task when the child ends first; a cancellation from outside (server shutdown), while both
    wait or just as the child's end stops the other, is not taken for it: CancelledError
    propagates, after the child task is cancelled and awaited."""
    loop = asyncio.get_running_loop()
    started = asyncio.Event()
    there_ends = asyncio.Event()
    unwound: list[str] = []

    async def here() -> tuple[str, str]:
        try:
            await waits_for_ever()
        finally:
            unwound.append("here")
        return "never", ""

    async def there() -> tuple[str, str]:
        started.set()
        try:
            await there_ends.wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0)  # a child that takes a step to unwind is awaited still
            unwound.append("there")
            raise
        return "client_closed", "code 1000"

    before = asyncio.all_tasks()
    task = asyncio.create_task(_first_to_finish(here(), there()))
    await started.wait()
    [child] = asyncio.all_tasks() - before - {task}
    if when == "waiting":
        task.cancel()
    else:  # the child ends; once that has cancelled ``task``, the server cancels it too
        child.add_done_callback(lambda _: loop.call_soon(task.cancel))
        there_ends.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert child.done()
    assert unwound == (["here", "there"] if when == "waiting" else ["here"])
