"""What uvicorn is told by server.Server: request head limits, refused handshakes, proxies."""

from __future__ import annotations

import signal
import socket

import httpx
from support import (
    DEADLINE,
    RunningService,
    cli_args,
    http_status,
    png,
    run_service,
    serve,
    wait_for,
)

from elog_stream.config import Settings
from elog_stream.embedded import free_port

REFUSED = (b"HTTP/1.1 400 ", b"HTTP/1.1 414 ", b"HTTP/1.1 431 ")


def exchange(port: int, request: bytes) -> bytes:
    """Send ``request``; what the server answers before it closes the connection.

    Fails (socket timeout) if the server keeps the connection open.
    """
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        try:
            sock.sendall(request)
            while chunk := sock.recv(65536):
                answer += chunk
        except (BrokenPipeError, ConnectionResetError):  # refused before all was sent
            pass
    return answer


def handshake(path: str, headers: str = "") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\n{headers}\r\n"
    ).encode()


def test_oversized_handshakes_are_refused_and_shutdown_stays_clean(settings: Settings) -> None:
    port = free_port()
    with serve(*cli_args(settings, "--port", str(port))) as server:
        base = f"http://127.0.0.1:{port}/"
        wait_for(lambda: http_status(base + "healthz") == 200, "the service")
        too_many_headers = "".join(f"X-{i}: {i}\r\n" for i in range(200))
        for request in (
            handshake("/ws?topic=" + "a" * 60_000),
            handshake("/ws?topic=" + "a" * 12_000),  # passes h11, refused by websockets
            handshake("/ws", too_many_headers),
        ):
            answer = exchange(port, request)
            assert answer.startswith(REFUSED), answer[:200]
        assert http_status(base + "healthz") == 200

        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(DEADLINE) == 0
        server.pump.join(DEADLINE)
        output = "".join(server.drain())
        assert "Traceback" not in output and "ERROR" not in output, output


def test_a_huge_header_is_refused_early(service: RunningService) -> None:
    port = httpx.URL(service.url).port
    assert port is not None
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n"
    answer = exchange(port, request)
    assert answer == b"" or answer.startswith(REFUSED), answer[:200]
    assert service.health().status_code == 200


def publish_statuses(service: RunningService, count: int) -> list[int]:
    """Statuses of ``count`` publishes, each claiming another client in X-Forwarded-For."""
    return [
        httpx.post(
            service.url + "api/topics/xff",
            params={"experiment": "e"},
            content=png(str(i)),
            headers={"X-Forwarded-For": f"203.0.113.{i}"},
        ).status_code
        for i in range(count)
    ]


def test_forwarded_for_is_ignored_unless_from_a_trusted_proxy(settings: Settings) -> None:
    limited = settings.replace(publish_rate=0.01, publish_burst=2)
    with run_service(limited) as service:  # 127.0.0.1 is no proxy by default
        assert publish_statuses(service, 3) == [201, 201, 429]
    with run_service(limited, trusted_proxies=["127.0.0.1"]) as service:
        assert publish_statuses(service, 3) == [201, 201, 201]  # three clients, as told


def test_a_request_head_must_arrive_in_time(settings: Settings) -> None:
    with run_service(settings, request_head_timeout=1) as service:
        port = service.server.servers[0].sockets[0].getsockname()[1]
        for start in (b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "):
            with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
                sock.sendall(start)
                assert sock.recv(1024) == b"", "closed without an answer"
        assert service.health().status_code == 200


def test_a_head_over_the_limit_is_refused_even_in_one_piece(service: RunningService) -> None:
    port = service.server.servers[0].sockets[0].getsockname()[1]
    for size in (17_000, 120_000):
        request = f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * size}\r\n\r\n".encode()
        answer = exchange(port, request)
        assert answer.startswith((b"HTTP/1.1 431 ", b"HTTP/1.1 400 ")) or answer == b"", answer[:80]
    assert b"HTTP/1.1 200 " in exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")


def test_the_viewer_cannot_be_served_without_its_security_headers(service: RunningService) -> None:
    for path in ("docs%2F..%2Findex.html", "redoc%2F..%2Fjs%2Fmain.js", ""):
        response = httpx.get(service.url + path)
        if response.status_code == 200:
            assert "script-src 'self'" in response.headers["content-security-policy"], path
        assert response.headers["x-frame-options"] == "DENY"
    assert httpx.get(service.url + "docs").headers["x-frame-options"] == "DENY"
