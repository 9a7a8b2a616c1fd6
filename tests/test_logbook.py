"""The logbook: pinning over HTTP, from Python and the CLI; reading, retracting, searching; the
live push across replicas; access; the persistence check. Real Redis, real services."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import redis
from support import DEADLINE, cli_args, png, receive, replicas, run_service, serve, wait_for
from websockets.asyncio.client import ClientConnection, connect

from elog_stream import AsyncPublisher, Publisher
from elog_stream.cli import main
from elog_stream.errors import TopicNotFoundError, VersionNotKeptError
from elog_stream.logbook_scripts import IMAGE_SCRIPT, PIN_SCRIPT, READ_SCRIPT, RETRACT_SCRIPT

PIN_TOKEN = "pin-token-for-the-logbook"
VIEW_TOKEN = "view-token-for-the-logbook"
PUBLISH_TOKEN = "publish-token-for-the-logbook"


def pin(url: str, **body: object) -> httpx.Response:
    return httpx.post(url + "api/logbook", json={"author": "Ada", **body}, timeout=10)


async def receive_entry(ws: ClientConnection, entry_id: str, retracted: bool) -> dict[str, Any]:
    """The next pushed entry ``entry_id`` whose retraction is there or not, as asked (its pin
    may be pushed first: it was announced before this viewer connected, or in between)."""
    async with asyncio.timeout(DEADLINE):
        while True:
            entry = (await receive(ws, "logbook"))["entry"]
            if entry["id"] == entry_id and (entry["retracted"] is not None) == retracted:
                return entry


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_pinned_image_outlives_its_topic_byte_for_byte(service, settings, publisher) -> None:
    publisher.publish("beam/profile", "cxi1", png("the jet moved"), "profile")
    response = pin(service.url, topic="beam/profile", seq=1, comment="the jet moved here")
    assert response.status_code == 201, response.text
    entry = response.json()
    # A publish with a short ELOG_TTL: the topic and its history now expire within a second.
    with Publisher(settings.redis_url, prefix=settings.prefix, ttl=1) as short_lived:
        short_lived.publish("beam/profile", "cxi1", png("later"))
    assert entry["seq"] == 1 and entry["topic"] == "beam/profile" and entry["experiment"] == "cxi1"
    assert entry["digest"] == digest(png("the jet moved")) and entry["author"] == "Ada"
    assert entry["description"] == "profile" and entry["retracted"] is None
    assert entry["url"] == f"api/logbook/cxi1/entries/{entry['id']}"
    assert entry["image_url"] == entry["url"] + "/image"

    topic = service.url + "api/topics/beam/profile"
    wait_for(lambda: httpx.get(topic).status_code == 404, "the topic to expire", 3 * DEADLINE)
    raw = redis.Redis.from_url(settings.redis_url)
    keys = settings.keys
    assert raw.exists(keys.topic("beam/profile"), keys.history("beam/profile")) == 0
    raw.close()
    image = httpx.get(service.url + entry["image_url"])
    assert image.status_code == 200 and image.content == png("the jet moved")
    assert image.headers["content-type"] == "image/png"
    assert image.headers["etag"] == f'"{entry["digest"]}"'
    again = httpx.get(
        service.url + entry["image_url"], headers={"If-None-Match": image.headers["etag"]}
    )
    assert again.status_code == 304
    preview = httpx.get(service.url + entry["image_url"], params={"max_width": 16})
    assert preview.status_code == 200 and preview.content != image.content
    assert httpx.get(service.url + entry["url"]).json() == entry
    # The topic is gone: pinning it now says so.
    gone = pin(service.url, topic="beam/profile", comment="too late")
    assert gone.status_code == 404 and "no live image" in gone.json()["detail"]


def test_only_the_version_asked_for_is_ever_pinned(service, settings) -> None:
    with Publisher(settings.redis_url, prefix=settings.prefix, history_length=2) as publisher:
        for n in range(1, 5):
            publisher.publish("det/sum", "cxi2", png(f"v{n}"))
    old = pin(service.url, topic="det/sum", seq=1, comment="first frame")
    assert old.status_code == 404
    assert old.json()["detail"] == "image 1 of topic 'det/sum' is no longer kept"
    kept = pin(service.url, topic="det/sum", seq=3, comment="kept")
    assert kept.status_code == 201 and kept.json()["digest"] == digest(png("v3"))
    current = pin(service.url, topic="det/sum", comment="current", digest=digest(png("v4")))
    assert current.status_code == 201 and current.json()["seq"] == 4
    # A digest says which image was seen: seq 4 is another image now, so nothing is pinned.
    seen = pin(service.url, topic="det/sum", seq=4, comment="x", digest=digest(png("other")))
    assert seen.status_code == 404 and "is now another image" in seen.json()["detail"]
    assert pin(service.url, topic="det/none", comment="x").status_code == 404
    for bad in (
        {"topic": "det/sum", "comment": "x", "author": None},  # no author
        {"topic": "det/sum", "comment": "bell\x07"},
        {"topic": "det/sum", "comment": "x" * 10_001},
        {"topic": "det/sum", "comment": "x", "author": "a" * 101},
        {"topic": "det/sum", "comment": "x", "author": "new\nline"},
        {"topic": "det/sum", "comment": "x", "seq": -1},
        {"topic": "bad//topic", "comment": "x"},
        {"topic": "det/sum"},
    ):
        response = pin(service.url, **bad)
        assert response.status_code == 422, (bad, response.text)
    for junk in (b"not json", png("an image"), b'{"topic": "det/sum", "comment": "\xff"}'):
        refused = httpx.post(service.url + "api/logbook", content=junk, timeout=10)
        assert refused.status_code == 422, refused.text
    assert "author required" in pin(service.url, topic="det/sum", comment="x", author=None).text
    entries = httpx.get(service.url + "api/logbook/cxi2").json()["entries"]
    assert [e["seq"] for e in entries] == [4, 3]
    # The same image pinned twice is stored once.
    assert pin(service.url, topic="det/sum", comment="again").status_code == 201
    raw = redis.Redis.from_url(settings.redis_url)
    images = list(raw.scan_iter(f"{settings.prefix}logbook:{{cxi2}}:image:*"))
    raw.close()
    assert len(images) == 2


async def test_retracted_entries_stay_readable_and_say_who_and_why(service, publisher) -> None:
    publisher.publish("run/a", "cxi3", png("a"))
    entry = pin(service.url, topic="run/a", comment="wrong run").json()
    url = service.url + entry["url"]
    async with connect(service.ws_url) as ws:
        await receive(ws, "sync")
        response = httpx.post(url + "/retract", json={"reason": "not this run", "author": "Bo"})
        assert response.status_code == 200, response.text
        retracted = response.json()["retracted"]
        assert retracted["by"] == "Bo" and retracted["reason"] == "not this run"
        pushed = await receive_entry(ws, entry["id"], retracted=True)
        assert pushed["retracted"] == retracted
    assert httpx.get(url).json()["retracted"] == retracted
    assert httpx.get(url + "/image").content == png("a")
    again = httpx.post(url + "/retract", json={"reason": "twice", "author": "Cy"})
    assert again.status_code == 409 and "already retracted" in again.json()["detail"]
    assert httpx.get(url).json()["retracted"] == retracted  # never edited
    missing = service.url + "api/logbook/cxi3/entries/1-0/retract"
    assert httpx.post(missing, json={"reason": "x", "author": "Bo"}).status_code == 404
    assert httpx.post(url + "/retract", json={"reason": "x"}).status_code == 422
    listed = httpx.get(service.url + "api/logbook/cxi3").json()["entries"]
    assert listed[0]["retracted"] == retracted


def test_pages_newest_first_and_search_by_words_in_any_order(service, publisher) -> None:
    publisher.publish("scan/x", "cxi4", png("x"), "Detector X")
    comments = [f"entry {n}" for n in range(7)]
    comments[2] = "Alpha and BETA"
    comments[5] = "beta, then alpha"
    ids = [pin(service.url, topic="scan/x", comment=c).json()["id"] for c in comments]
    seen, url = [], service.url + "api/logbook/cxi4?limit=3"
    while url:
        page = httpx.get(url).json()
        assert len(page["entries"]) <= 3
        seen += [e["id"] for e in page["entries"]]
        url = page["next"] and service.url + page["next"]
    assert seen == ids[::-1]
    found = httpx.get(service.url + "api/logbook/cxi4", params={"q": "alpha beta"}).json()
    assert [e["comment"] for e in found["entries"]] == [comments[5], comments[2]]
    assert found["next"] is None
    by_description = httpx.get(service.url + "api/logbook/cxi4", params={"q": "detector x"})
    assert len(by_description.json()["entries"]) == 7
    by_author = httpx.get(service.url + "api/logbook/cxi4", params={"q": "ada entry 6"})
    assert [e["id"] for e in by_author.json()["entries"]] == [ids[6]]
    page = httpx.get(service.url + "api/logbook/cxi4", params={"q": "alpha", "limit": 1}).json()
    assert [e["id"] for e in page["entries"]] == [ids[5]]
    rest = httpx.get(service.url + page["next"]).json()
    assert [e["id"] for e in rest["entries"]] == [ids[2]]
    summary = [
        e for e in httpx.get(service.url + "api/logbook").json() if e["experiment"] == "cxi4"
    ]
    assert summary[0]["entries"] == 7
    assert httpx.get(service.url + "api/logbook/nothing-here").json()["entries"] == []
    assert httpx.get(service.url + "api/logbook/cxi4?before=nonsense").status_code == 422
    assert httpx.get(service.url + "api/logbook/cxi4?limit=201").status_code == 422


def test_experiment_names_with_slashes_are_one_segment(service, publisher) -> None:
    publisher.publish("t/a", "lab/2026 run", png("slash"))
    entry = pin(service.url, topic="t/a", comment="x").json()
    assert entry["url"].startswith("api/logbook/lab%2F2026%20run/entries/")
    assert httpx.get(service.url + entry["image_url"]).content == png("slash")
    page = httpx.get(service.url + "api/logbook/" + quote("lab/2026 run", safe="")).json()
    assert [e["id"] for e in page["entries"]] == [entry["id"]]


def test_pin_from_python_sync_and_async_and_the_cli(
    service, settings, monkeypatch, capsys, tmp_path
) -> None:
    monkeypatch.setenv("ELOG_AUTHOR", "Grace")
    with Publisher(settings.redis_url, prefix=settings.prefix) as publisher:
        publisher.publish("py/t", "cxi5", png("1"))
        publisher.publish("py/t", "cxi5", png("2"))
        entry = publisher.pin("py/t", "from python", seq=1)
        assert (entry.author, entry.seq, entry.digest) == ("Grace", 1, digest(png("1")))
        assert publisher.pin("py/t", "by name", author="Linus").author == "Linus"
        with pytest.raises(VersionNotKeptError):
            publisher.pin("py/t", "x", seq=99)
        with pytest.raises(TopicNotFoundError):
            publisher.pin("py/none", "x")

    async def pin_async() -> str:
        async with AsyncPublisher(settings.redis_url, prefix=settings.prefix) as publisher:
            return (await publisher.pin("py/t", "from asyncio", author="Async")).id

    async_id = asyncio.run(pin_async())
    assert main(cli_args(settings, "pin", "py/t", "from the cli", "--seq", "2")) == 0
    assert "pinned py/t seq 2 to the logbook of cxi5" in capsys.readouterr().out
    assert main(cli_args(settings, "pin", "py/t", "x", "--seq", "1000")) == 1
    assert "image 1000 of topic 'py/t' is no longer kept" in capsys.readouterr().err

    assert main(cli_args(settings, "logbook", "list", "cxi5", "--json")) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["comment"] for e in listed] == [
        "from the cli",
        "from asyncio",
        "by name",
        "from python",
    ]
    assert listed[1]["id"] == async_id and listed[0]["author"] == "Grace"
    assert main(cli_args(settings, "logbook", "list", "cxi5", "--search", "PYTHON")) == 0
    assert "from python" in capsys.readouterr().out
    # What the CLI pinned, the service serves, and the ZIP export holds it.
    assert httpx.get(service.url + listed[0]["image_url"]).content == png("2")
    archive_path = tmp_path / "cxi5.zip"
    assert main(cli_args(settings, "logbook", "export", "cxi5", "--zip", str(archive_path))) == 0
    with zipfile.ZipFile(archive_path) as archive:
        entries = json.loads(archive.read("entries.json"))
        assert [e["id"] for e in entries] == [e["id"] for e in listed]
        assert archive.read(entries[0]["file"]) == png("2")


ELOGSHOW_SCRIPT = """
import matplotlib
matplotlib.use("Agg")
from matplotlib import pyplot
from elog_stream import elogshow, Publisher

pyplot.plot([0, 1, 4])
seq = elogshow("auto/plot", "cxi6", "a pipeline", pin="logged automatically")
entry = Publisher().pin("auto/plot", "pinned again", seq)
print(seq, entry.author, flush=True)
"""


def test_elogshow_pins_the_frame_it_publishes(service, settings) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELOG_")}
    env.update(ELOG_REDIS_URL=str(settings.redis_url), ELOG_PREFIX=settings.prefix)
    env.update(ELOG_AUTHOR="pipeline 7")
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(ELOGSHOW_SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=4 * DEADLINE,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "pipeline", "7"]
    entries = httpx.get(service.url + "api/logbook/cxi6").json()["entries"]
    assert [(e["comment"], e["seq"], e["author"]) for e in entries] == [
        ("pinned again", 1, "pipeline 7"),
        ("logged automatically", 1, "pipeline 7"),
    ]
    assert entries[0]["digest"] == entries[1]["digest"]


async def test_entries_reach_viewers_on_every_replica(redis_url, prefix) -> None:
    with replicas([redis_url, redis_url], prefix) as (a, b):
        with Publisher(redis_url, prefix=prefix) as publisher:
            publisher.publish("live/a", "cxi7", png("a"))
            publisher.publish("live/other", "other", png("o"))
            async with (
                connect(b.ws_url + "?experiment=cxi7") as on_b,
                connect(a.ws_url) as everything_on_a,
                connect(b.ws_url + "?experiment=other") as other_on_b,
            ):
                for ws in (on_b, everything_on_a, other_on_b):
                    await receive(ws, "sync")
                over_http = pin(a.url, topic="live/a", comment="pinned on A").json()
                from_python = await asyncio.to_thread(publisher.pin, "live/a", "from Python")
                for ws in (on_b, everything_on_a):
                    first = await receive(ws, "logbook")
                    second = await receive(ws, "logbook")
                    assert first["entry"] == over_http
                    assert second["entry"]["id"] == from_python.id
                    assert second["entry"]["comment"] == "from Python"
                other = pin(b.url, topic="live/other", comment="elsewhere").json()
                # The viewer of "other" gets its entry, and none of cxi7's (sent before it).
                assert (await receive(other_on_b, "logbook"))["entry"]["id"] == other["id"]
                retracted = httpx.post(
                    b.url + over_http["url"] + "/retract", json={"reason": "r", "author": "A"}
                )
                assert retracted.status_code == 200
                pushed = await receive(everything_on_a, "logbook")
                pushed = (
                    pushed
                    if pushed["entry"]["id"] == over_http["id"]
                    else await receive(everything_on_a, "logbook")
                )
                assert pushed["entry"]["retracted"]["reason"] == "r"


def test_who_may_pin(settings, publisher) -> None:
    configured = settings.replace(
        view_token=VIEW_TOKEN, publish_token=PUBLISH_TOKEN, pin_token=PIN_TOKEN
    )
    publisher.publish("acl/a", "cxi8", png("a"))
    with run_service(configured) as service:
        url = service.url + "api/logbook"
        body = {"topic": "acl/a", "comment": "x", "author": "Ada"}

        def post(token: str | None = None, **extra: object) -> httpx.Response:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return httpx.post(url, json=body, headers=headers, **extra)  # type: ignore[arg-type]

        assert post().status_code == 401
        assert post("not-a-token-of-ours").status_code == 401
        assert post(VIEW_TOKEN).status_code == 403
        pinned = post(PIN_TOKEN)
        assert pinned.status_code == 201 and pinned.json()["author"] == "Ada"
        assert post(PUBLISH_TOKEN).status_code == 201
        # The pin token reads the logbook too; the view token reads but cannot retract.
        entry = pinned.json()
        auth = {"Authorization": f"Bearer {PIN_TOKEN}"}
        assert httpx.get(service.url + "api/logbook/cxi8", headers=auth).status_code == 200
        view = {"Authorization": f"Bearer {VIEW_TOKEN}"}
        assert httpx.get(service.url + entry["url"], headers=view).status_code == 200
        assert httpx.get(service.url + entry["url"]).status_code == 401
        retract = service.url + entry["url"] + "/retract"
        reason = {"reason": "x", "author": "Ada"}
        assert httpx.post(retract, json=reason, headers=view).status_code == 403
        # A browser session made with the pin token and a name may pin, signed with that name.
        with httpx.Client(base_url=service.url) as browser:
            login = browser.post("login", data={"token": PIN_TOKEN, "name": "Dr. Ruth"})
            assert login.status_code == 303 and login.headers["location"] == "/"
            session = browser.get("api/session").json()
            assert session["name"] == "Dr. Ruth" and "pin" in session["grants"]
            assert "publish" not in session["grants"]
            signed = browser.post("api/logbook", json={**body, "author": "someone else"})
            assert signed.status_code == 201 and signed.json()["author"] == "Dr. Ruth"
            assert browser.post(retract, json={"reason": "mine"}).status_code == 200
        # One made with the view token may view, not pin; without a name it has none.
        with httpx.Client(base_url=service.url) as browser:
            assert browser.post("login", data={"token": VIEW_TOKEN}).status_code == 303
            session = browser.get("api/session").json()
            assert session["name"] is None and session["grants"] == ["view"]
            assert browser.post("api/logbook", json=body).status_code == 403
        with httpx.Client(base_url=service.url) as browser:
            bad = browser.post("login", data={"token": PIN_TOKEN, "name": "bad\x01name"})
            assert bad.headers["location"] == "/login?failed=name"
    with run_service(settings.replace(read_only=True)) as service:
        assert pin(service.url, topic="acl/a", comment="x").status_code == 403


def test_serve_warns_when_redis_keeps_no_data_on_disk(redis_url, prefix) -> None:
    # The test server keeps nothing on disk (EmbeddedRedis without a data directory).
    with serve("--port", "0", "--redis-url", redis_url, "--prefix", prefix) as server:
        line = server.wait_for_line(r"keeps no data on disk|could not check").string
    assert "keeps no data on disk" in line and "appendonly" in line and "AOF" in line
    # The embedded default persists (append-only file), and says so.
    with serve("--port", "0") as server:
        line = server.wait_for_line(r"keeps (its|no) data on disk").string
    assert "keeps its data on disk" in line


def test_serve_says_when_it_cannot_check_persistence(redis_url, prefix) -> None:
    raw = redis.Redis.from_url(redis_url)
    user = "no-config-" + prefix.rstrip(":")
    raw.acl_setuser(
        user,
        enabled=True,
        passwords=["+a-long-enough-password"],
        keys=["*"],
        channels=["*"],
        categories=["+@all"],
        commands=["-config"],
    )
    try:
        url = redis_url.replace("redis://", f"redis://{user}:a-long-enough-password@", 1)
        with serve("--port", "0", "--redis-url", url, "--prefix", prefix) as server:
            line = server.wait_for_line(r"keeps no data on disk|could not check").string
        assert "could not check whether Redis" in line and "no permissions" in line
    finally:
        raw.acl_deluser(user)
        raw.close()


def test_unusable_entries_are_skipped_and_tampered_images_refused(
    service, settings, publisher
) -> None:
    publisher.publish("bad/a", "cxi9", png("good"))
    good = pin(service.url, topic="bad/a", comment="good").json()
    raw = redis.Redis.from_url(settings.redis_url)
    stream = f"{settings.prefix}logbook:{{cxi9}}"
    raw.xadd(stream, {"topic": "bad/a", "comment": "no other fields"})
    raw.xadd(stream, {"garbage": b"\xff" * 10})
    listed = httpx.get(service.url + "api/logbook/cxi9").json()["entries"]
    assert [e["id"] for e in listed] == [good["id"]]
    stats = httpx.get(service.url + "api/stats").json()
    assert stats["feed_errors"].get("invalid_entry", 0) >= 2
    raw.set(f"{settings.prefix}logbook:{{cxi9}}:image:{good['digest']}", png("forged"))
    raw.close()
    forged = httpx.get(service.url + good["image_url"])
    assert forged.status_code == 409 and "digest" in forged.json()["detail"]


def test_the_documented_scripts_are_the_ones_used() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    blocks = re.findall(r"```lua\n(.*?)```", doc, re.S)
    for script in (PIN_SCRIPT, RETRACT_SCRIPT, READ_SCRIPT, IMAGE_SCRIPT):
        assert script in blocks, script.splitlines()[0]
