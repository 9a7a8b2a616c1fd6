"""The private server of ``elog-stream serve`` in its data directory, and how publishers find it.

With no Redis URL, ``serve`` runs an embedded server (embedded.py) whose data is kept in a data
directory (``--data-dir``, ``$ELOG_DATA_DIR``, else ``default_data_dir()``), created 0700:

- ``serve.lock`` is locked (``flock``) by the service and its server while they run, so a second
  ``serve`` there fails instead of running a second server over the same files;
- ``redis.json`` (0600) keeps the port and the password across restarts;
- ``server.json`` (0600) says where the running server is (url with the password, pid of the
  service, port, start time, host); written atomically once the server answers, removed on a clean
  stop. ``find_running`` reads it for publishers;
- ``appendonlydir/`` and ``valkey.log`` are the server's own.

The password keeps other users of the machine out (the server listens on loopback, which every
local user can reach); this user's publishers read it from ``server.json``, with no set-up.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis

from .config import redact_url
from .embedded import EmbeddedRedis, free_port, port_free
from .errors import AlreadyRunningError

LOCK_FILE = "serve.lock"
STATE_FILE = "redis.json"
RUNTIME_FILE = "server.json"


def default_data_dir() -> Path:
    """Where ``serve`` keeps its data unless told otherwise, by the platform's convention."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "elog-stream"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "elog-stream"
    base = os.environ.get("XDG_DATA_HOME") or ""
    if not os.path.isabs(base):  # the XDG spec: a relative value is to be ignored
        base = str(Path.home() / ".local" / "share")
    return Path(base) / "elog-stream"


@dataclass(frozen=True)
class ServerInfo:
    """What ``server.json`` says about a running server."""

    url: str  # with the password
    pid: int  # of the service that owns the server
    port: int
    started_at: float  # Unix time
    redis_pid: int
    host: str  # the data directory may be in a home directory shared by several machines

    @classmethod
    def from_json(cls, text: str) -> ServerInfo:
        """Parse ``text``; raises ValueError (or KeyError, TypeError) unless it is well formed."""
        data = json.loads(text)
        info = cls(**{name: data[name] for name in cls.__dataclass_fields__})
        if not (isinstance(info.url, str) and isinstance(info.pid, int)):
            raise ValueError("not a runtime file")
        return info

    def __str__(self) -> str:
        return f"{redact_url(self.url)} (pid {self.pid} on {self.host})"


def find_running(data_dir: Path | None = None, *, ping: bool = False) -> ServerInfo | None:
    """The server of a ``serve`` running on ``data_dir`` (None: the default), else None.

    Read from its runtime file, trusted only on the machine that wrote it while the service's
    pid is alive: a file left by a killed service, an unreadable or a malformed one is ignored.
    Nothing connects unless ``ping``: then the server must also answer PING (a pid reused
    after a crash or a reboot is not taken for a running service).
    """
    path = (data_dir or default_data_dir()) / RUNTIME_FILE
    try:
        info = ServerInfo.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if info.host != socket.gethostname() or not pid_alive(info.pid):
        return None
    if ping and not _answers(info.url):
        return None
    return info


def _answers(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1) as client:
            return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (it may be another's: pids are reused)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate it there
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return bool(kernel32.GetLastError() == 5)  # access denied: it exists
        try:
            code = ctypes.c_ulong()
            kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
            return code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalRedis:
    """The embedded server of a ``serve`` on ``data_dir`` (None: the default), data kept there.

    ``start()`` creates the directory, takes its lock (AlreadyRunningError when another
    service or its server holds it), starts the server on its last port when that is free
    (else on a new one, remembered) with its password, and writes the runtime file. ``stop()``
    removes the file, stops the server, releases the lock; safe to call twice. On POSIX the
    server holds the lock too, so a server left running (a killed service, not on Linux) keeps
    its directory locked. Call ``start()`` from a thread that outlives the server (see
    EmbeddedRedis).
    """

    def __init__(self, data_dir: Path | None = None, binary: str | None = None) -> None:
        self.data_dir = data_dir or default_data_dir()
        self.binary = binary
        self.info: ServerInfo | None = None
        self._lock: int | None = None
        self._server: EmbeddedRedis | None = None

    @property
    def url(self) -> str:
        if self.info is None:
            raise RuntimeError("the local server is not running")
        return self.info.url

    def start(self) -> LocalRedis:
        if self._lock is not None:
            raise RuntimeError("the local server is already started")
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if not _try_lock(lock):
                running = find_running(self.data_dir)
                raise AlreadyRunningError(self.data_dir, str(running) if running else "")
        except BaseException:
            os.close(lock)
            raise
        self._lock = lock
        try:
            port, password = self._remembered_port_and_password()
            self._server = EmbeddedRedis(
                port,
                self.binary,
                password,
                data_dir=self.data_dir,
                pass_fds=() if sys.platform == "win32" else (lock,),
            ).start()
            self.info = ServerInfo(
                self._server.url,
                os.getpid(),
                port,
                time.time(),
                self._server.pid or 0,
                socket.gethostname(),
            )
            write_private(self.data_dir / RUNTIME_FILE, json.dumps(asdict(self.info)))
        except BaseException:
            self.stop()
            raise
        return self

    def _remembered_port_and_password(self) -> tuple[int, str]:
        """The port of the last run if it is free, else a new one; the password, made once."""
        path = self.data_dir / STATE_FILE
        state: Any = {}
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
        if not isinstance(state, dict):
            state = {}
        port, password = state.get("port"), state.get("password")
        if not (isinstance(password, str) and password.isascii() and password.isalnum()):
            password = secrets.token_hex(32)
        if not (isinstance(port, int) and 0 < port < 65536 and port_free(port)):
            port = free_port()
        if state != {"port": port, "password": password}:
            write_private(path, json.dumps({"port": port, "password": password}))
        return port, password

    def stop(self) -> None:
        if self.info is not None:
            (self.data_dir / RUNTIME_FILE).unlink(missing_ok=True)
            self.info = None
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        lock, self._lock = self._lock, None
        if lock is not None:
            os.close(lock)  # the lock goes with the last descriptor: ours, the server's is gone

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (readers see the old or the new file), 0600."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8") as file:
            if sys.platform != "win32":
                os.fchmod(fd, 0o600)  # a file left over by a crash may have had another mode
            file.write(text)
            file.flush()
            os.fsync(fd)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _try_lock(fd: int) -> bool:
    """Lock ``fd``'s file for this open file (shared with children that inherit it); False if
    another holds it. Raises OSError when the file system cannot lock."""
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
