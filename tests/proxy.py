"""A TCP proxy for the tests: a real network path between the service and Redis that can fail.

It forwards 127.0.0.1:<port> to a target port, and can black-hole chosen connections (bytes
are taken but never delivered, as a NAT or firewall that dropped an idle connection does) or
refuse all traffic for a while.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

_HEAD_BYTES = 4096


class _Connection:
    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.head = bytearray()  # the first bytes the client sent
        self.drop_requests = False
        self.drop_replies = False
        self.hang_up_on_reply = False

    def close(self) -> None:
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class TcpProxy:
    """Forwards connections to ``127.0.0.1:target_port``; use as a context manager."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._connections: list[_Connection] = []
        self._lock = threading.Lock()
        self._refusing = False
        self._losing_replies = False
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def blackhole(self, chooses: Callable[[bytes], bool]) -> int:
        """Silently drop all traffic, both ways, of the open connections whose first bytes
        ``chooses`` picks; return how many were picked. New connections still work."""
        with self._lock:
            picked = [c for c in self._connections if chooses(bytes(c.head))]
            for connection in picked:
                connection.drop_requests = connection.drop_replies = True
        return len(picked)

    @contextlib.contextmanager
    def losing_replies(self, spare: Callable[[bytes], bool]) -> Iterator[None]:
        """Until the block exits, the server gets and runs every command, but its replies are
        lost, on every connection (new ones too) except the open ones ``spare`` picks."""
        with self._lock:
            self._losing_replies = True
            for connection in self._connections:
                connection.drop_replies = not spare(bytes(connection.head))
        try:
            yield
        finally:
            with self._lock:
                self._losing_replies = False
                for connection in self._connections:
                    connection.drop_replies = connection.drop_requests

    @contextlib.contextmanager
    def hanging_up(self, spare: Callable[[bytes], bool]) -> Iterator[None]:
        """Until the block exits, the server gets and runs every command, but the first reply
        on each open connection that ``spare`` does not pick closes it instead."""
        with self._lock:
            for connection in self._connections:
                connection.hang_up_on_reply = not spare(bytes(connection.head))
        try:
            yield
        finally:
            with self._lock:
                for connection in self._connections:
                    connection.hang_up_on_reply = False

    @contextlib.contextmanager
    def refusing(self) -> Iterator[None]:
        """Cut every connection, and cut new ones at once, until the block exits."""
        self._refusing = True
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        try:
            yield
        finally:
            self._refusing = False

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._refusing:
                client.close()
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            connection = _Connection(client, server)
            with self._lock:
                connection.drop_replies = self._losing_replies
                self._connections.append(connection)
            for source, sink, upstream in ((client, server, True), (server, client, False)):
                threading.Thread(
                    target=self._pump, args=(connection, source, sink, upstream), daemon=True
                ).start()

    def _pump(
        self, connection: _Connection, source: socket.socket, sink: socket.socket, upstream: bool
    ) -> None:
        try:
            while data := source.recv(65536):
                if not upstream and connection.hang_up_on_reply:
                    break
                if upstream and len(connection.head) < _HEAD_BYTES:
                    connection.head += data[: _HEAD_BYTES - len(connection.head)]
                if not (connection.drop_requests if upstream else connection.drop_replies):
                    sink.sendall(data)
        except OSError:
            pass
        if not connection.drop_requests:
            connection.close()  # a black hole tells nobody that the other side left
