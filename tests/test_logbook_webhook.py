"""Forwarding new logbook entries to a webhook: a real HTTP receiver that fails twice, two
replicas that must deliver each entry exactly once between them, failures in /metrics."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import default
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest
from support import DEADLINE, http_server, png, replicas, wait_for

from elog_stream import Publisher


class Receiver:
    """A facility's logbook: answers 500 to the first ``failures`` POSTs, then 200."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0
        self.accepted: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def handle(self, handler: BaseHTTPRequestHandler) -> int:
        body = handler.rfile.read(int(handler.headers["Content-Length"]))
        with self.lock:
            self.attempts += 1
            if self.attempts <= self.failures:
                return 500
            head = f"Content-Type: {handler.headers['Content-Type']}\r\n\r\n".encode()
            message = BytesParser(policy=default).parsebytes(head + body)
            parts = {
                part.get_param("name", header="content-disposition"): part
                for part in message.iter_parts()
            }
            self.accepted.append(
                {
                    "id": handler.headers["Elog-Entry-Id"],
                    "entry": json.loads(parts["entry"].get_content()),
                    "image": parts["image"].get_content(),
                    "image_type": parts["image"].get_content_type(),
                }
            )
            return 200

    def ids(self) -> list[str]:
        with self.lock:
            return [item["id"] for item in self.accepted]


@pytest.fixture
def receiver() -> Iterator[tuple[str, Receiver]]:
    state = Receiver(failures=2)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(state.handle(self))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Handler) as base:
        yield f"{base}/elog/inbox", state


def metric(url: str, name: str) -> float:
    for line in httpx.get(url + "metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_each_entry_reaches_the_webhook_once_after_failures(redis_url, prefix, receiver) -> None:
    url, inbox = receiver
    with Publisher(redis_url, prefix=prefix) as publisher:
        publisher.publish("hook/a", "cxi-hook", png("a"), "forwarded")
        before = publisher.pin("hook/a", "pinned before any webhook", author="early")
        with replicas([redis_url, redis_url], prefix, ELOG_LOGBOOK_WEBHOOK=url) as group:
            pinned = [publisher.pin("hook/a", f"entry {n}", author="Ada") for n in range(3)]
            wait_for(lambda: len(inbox.ids()) >= 3, "three entries delivered", 4 * DEADLINE)
            last = publisher.pin("hook/a", "entry 3", author="Ada")
            wait_for(lambda: last.id in inbox.ids(), "the fourth entry delivered", 4 * DEADLINE)
            assert sorted(inbox.ids()) == sorted(entry.id for entry in [*pinned, last])
            assert before.id not in inbox.ids()
            assert inbox.attempts == 4 + 2  # two failures, retried, then each entry once
            delivered = sum(metric(r.url, "elog_webhook_delivered_total") for r in group)
            failures = sum(metric(r.url, "elog_webhook_failures_total") for r in group)
            assert (delivered, failures) == (4, 2)
    first = next(item for item in inbox.accepted if item["id"] == pinned[0].id)
    assert first["image"] == png("a") and first["image_type"] == "image/png"
    assert first["entry"]["comment"] == "entry 0" and first["entry"]["digest"] == pinned[0].digest
    assert first["entry"]["description"] == "forwarded" and first["entry"]["author"] == "Ada"
