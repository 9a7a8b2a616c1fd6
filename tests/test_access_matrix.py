"""Every route of the app × every access setting × every credential, against docs/protocol.md.

The routes come from the app's own route table (and the viewer's files from its directory),
so a route added later without a row in the documented table, or without the access it
documents, fails here.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from starlette.routing import Mount
from support import RunningService, png, run_service
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from elog_stream.app import create_app
from elog_stream.auth import COOKIE, PAGES
from elog_stream.config import Settings, web_directory

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
VIEW = "view-token-for-the-matrix"
PUBLISH = "publish-token-for-the-matrix"
PIN = "pin-token-for-the-matrix"
SETTINGS = {  # the rows of the documented grants table
    "nothing set": {},
    "`ELOG_VIEW_TOKEN`": {"view_token": VIEW},
    "`ELOG_PUBLISH_TOKEN`": {"publish_token": PUBLISH},
    "both": {"view_token": VIEW, "publish_token": PUBLISH},
    "`ELOG_PIN_TOKEN`": {"pin_token": PIN},
    "all three": {"view_token": VIEW, "publish_token": PUBLISH, "pin_token": PIN},
    "`ELOG_READ_ONLY=1`": {"read_only": True},
}
CREDENTIALS = ("no credential", "view token", "publish token", "pin token", "browser session")
EXAMPLE = {"topic": "matrix/a", "seq": "1", "experiment": "e", "entry_id": "1-0"}


def documented_routes() -> dict[tuple[str, str], str]:
    """(method, path) -> needed access, from the route table of docs/protocol.md."""
    text = DOC.read_text()
    table = text[text.index("| method and path | needs | what |") :]
    routes = {}
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        for call in re.findall(r"`([A-Z]+ [^`?]+)", cells[0]):
            method, path = call.split(" ", 1)
            routes[(method, path)] = cells[1]
    return routes


def documented_grants() -> dict[str, dict[str, str]]:
    """settings row -> credential -> cell ("view, publish", "view", "nothing", "as none"...)."""
    text = DOC.read_text()
    table = text[text.index("| settings | no credential |") :]
    header, _, *rows = table.splitlines()
    columns = [cell.strip() for cell in header.strip("|").split("|")][1:]
    grants = {}
    for line in rows:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        grants[cells[0]] = dict(zip(columns, cells[1:], strict=True))
    return grants


def app_routes(settings: Settings) -> list[tuple[str, str, str]]:
    """(method, concrete path, documented path) of every route the app serves."""
    routes = []
    for context in iter_route_contexts(create_app(settings).routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: EXAMPLE[m[1]], context.path)
            documented = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", context.path)
            for method in sorted(context.methods):
                routes.append((method, path, documented))
        elif isinstance(route, APIWebSocketRoute):
            routes.append(("WS", context.path, context.path))
        elif isinstance(route, Mount):
            root = web_directory()
            for file in sorted(root.rglob("*")):
                if file.is_file():
                    path = "/" + file.relative_to(root).as_posix()
                    routes.append(("GET", path, path))
            routes.append(("GET", "/", "/"))
        else:
            pytest.fail(f"a route of an unknown kind: {route!r}")
    return routes


def needed(documented: dict[tuple[str, str], str], method: str, path: str) -> str:
    if method == "HEAD":
        method = "GET"
    if (method, path) in documented:
        return documented[(method, path)]
    assert method == "GET" and ("GET", "/{viewer file}") in documented, (method, path)
    assert not path.startswith("/api/"), f"{method} {path} is missing from docs/protocol.md"
    return documented[("GET", "/{viewer file}")]


def expected_status(
    cells: dict[str, str], credential: str, need: str, read_only: bool
) -> int | None:
    """None when allowed, else the documented refusal."""
    cell = cells[credential]
    counts = cell not in ("as none", "invalid") and credential != "no credential"
    if cell == "as none":
        cell = cells["no credential"]
    grants = set() if cell in ("nothing", "invalid") else set(cell.split(", "))
    if need == "public" or need in grants:
        return None
    if need in ("publish", "pin") and read_only:
        return 403
    return 403 if counts else 401


@pytest.fixture(params=list(SETTINGS), ids=lambda row: re.sub(r"\W+", "-", row).strip("-"))
def setting(
    request: pytest.FixtureRequest, settings: Settings
) -> Iterator[tuple[str, RunningService]]:
    configured = settings.replace(**SETTINGS[request.param], publish_rate=1000, publish_burst=1000)
    with run_service(configured) as service:
        yield request.param, service


def credential_headers(credential: str, service: RunningService) -> dict[str, str]:
    if credential == "view token":
        return {"Authorization": f"Bearer {VIEW}"}
    if credential == "publish token":
        return {"Authorization": f"Bearer {PUBLISH}"}
    if credential == "pin token":
        return {"Authorization": f"Bearer {PIN}"}
    if credential == "browser session":
        login = httpx.post(service.url + "login", data={"token": VIEW})
        assert login.status_code == 303
        cookie = login.cookies.get(COOKIE) or "not-a-session.1.0"
        return {"Cookie": f"{COOKIE}={cookie}"}
    return {}


async def websocket_outcome(url: str, headers: dict[str, str]) -> int | None:
    """None when the socket is served (a first frame arrives), else its close code."""
    async with connect(url, additional_headers=headers) as ws:
        try:
            await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            return closed.rcvd.code
    return None


def test_the_documented_tables_cover_every_route(settings: Settings) -> None:
    documented = documented_routes()
    assert set(documented_grants()) == set(SETTINGS)
    served = {(method, path) for method, _, path in app_routes(settings)}
    for method, path in served:
        need = needed(documented, method, path)
        assert need in ("public", "view", "pin", "publish"), (method, path, need)
    stale = {
        (method, path)
        for method, path in documented
        if method != "HEAD" and path != "/{viewer file}" and (method, path) not in served
    }
    assert not stale, f"documented routes the app does not serve: {stale}"


async def test_every_route_answers_as_documented(setting, publisher, settings) -> None:
    row, service = setting
    documented = documented_routes()
    cells = documented_grants()[row]
    read_only = SETTINGS[row].get("read_only", False)
    publisher.publish("matrix/a", "e", png("a"))
    failures = []
    async with httpx.AsyncClient(base_url=service.url.rstrip("/"), timeout=10) as client:
        for credential in CREDENTIALS:
            headers = credential_headers(credential, service)
            for method, path, documented_path in app_routes(settings):
                need = needed(documented, method, documented_path)
                want = expected_status(cells, credential, need, read_only)
                if method == "WS":
                    url = service.ws_url.removesuffix("/ws") + path
                    code = await websocket_outcome(url, headers)
                    got = None if code is None else {4401: 401, 4403: 403}.get(code, code)
                else:
                    response = await client.request(
                        method,
                        path,
                        headers=headers,
                        params={"experiment": "e"} if method == "POST" else None,
                        content=png("m") if path.startswith("/api/") else None,
                    )
                    status = response.status_code
                    got = status if status in (401, 403) else None
                    if path in PAGES and status == 303:
                        got = 401  # the viewer sends the unidentified to the login page
                        assert response.headers["location"] == "/login"
                if got != want:
                    failures.append(f"{credential}: {method} {path} -> {got}, documented {want}")
                if path == "/logout":  # it revoked the session: start another
                    headers = credential_headers(credential, service)
    assert not failures, "\n".join(failures)
