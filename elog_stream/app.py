"""The FastAPI application: HTTP API, viewer WebSocket, static viewer, security headers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute, APIRouter, APIWebSocketRoute, iter_route_contexts
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import api, logbook_api, login, viewer_socket
from .auth import Access, AccessPolicy, ViewerFiles, declared_access, needs
from .config import Settings, web_directory
from .errors import (
    CorruptTopicError,
    ElogError,
    ImageTooLargeError,
    InvalidImageError,
    InvalidNameError,
    PublishOutcomeUnknownError,
    RedisRefusedError,
    RedisUnavailableError,
    RequestTimeoutError,
    RequestTooLargeError,
    ServiceBusyError,
    TopicNotFoundError,
)
from .server import MAX_REQUEST_HEAD_BYTES
from .service import running_service

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)

_STATUS = [  # first match wins
    (ImageTooLargeError, 413),
    (RequestTooLargeError, 413),
    (RequestTimeoutError, 408),
    (ServiceBusyError, 503),
    (InvalidImageError, 415),
    (InvalidNameError, 422),
    (TopicNotFoundError, 404),
    (CorruptTopicError, 409),
    (PublishOutcomeUnknownError, 504),
    (RedisUnavailableError, 503),
    (RedisRefusedError, 503),
]


def create_app(
    settings: Settings | None = None, *, demo: bool = False, root_path: str = ""
) -> FastAPI:
    """The service as an ASGI app; its lifespan owns the Redis connection and background tasks.

    ``settings`` defaults to ``Settings.from_env()``; with no Redis URL an embedded server is
    started for the app's lifetime, its data kept in ``settings.data_dir`` (local.py).
    ``demo`` also publishes demo plots. ``root_path`` is the path prefix under which a reverse
    proxy serves the app (e.g. ``/elog``).
    """
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running_service(settings, demo=demo) as service:
            app.state.service = service
            yield

    app = FastAPI(
        title="elog-stream",
        summary="Live matplotlib figures from Redis, pushed to browsers.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.access = AccessPolicy(settings)
    app.add_exception_handler(ElogError, _elog_error)
    app.add_exception_handler(405, _method_not_allowed)
    app.include_router(api.router)
    app.include_router(api.publishing)
    app.include_router(logbook_api.router)
    app.include_router(login.router)
    app.include_router(viewer_socket.router)
    app.include_router(_docs)
    _check_access_declared(app)
    app.mount("/", ViewerFiles(directory=web_directory(), html=True), name="viewer")
    app.add_middleware(SecurityHeaders)
    app.add_middleware(HeadLimit)
    if root_path:
        app.add_middleware(PathPrefix, prefix=root_path)
    return app


def _check_access_declared(app: FastAPI) -> None:
    """Refuse to build an app with a route that does not say what access it needs."""
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, APIRoute | APIWebSocketRoute):
            if declared_access(route.dependencies) is None:
                raise RuntimeError(f"route {route.path} does not declare its access (auth.needs)")


async def _elog_error(request: Request, exc: Exception) -> JSONResponse:
    status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 400)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, ServiceBusyError) else None
    return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)


# The API's schema and interactive docs, guarded like the API.
_docs = APIRouter(include_in_schema=False, dependencies=needs(Access.VIEW))


@_docs.get("/openapi.json")
async def _openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@_docs.get("/docs")
async def _swagger(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(openapi_url=f"{root}/openapi.json", title="elog-stream API")


@_docs.get("/redoc")
async def _redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_redoc_html(openapi_url=f"{root}/openapi.json", title="elog-stream API")


async def _method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    # Starlette lists only the methods of the first route matching the path; several routes
    # share paths here (GET and POST /api/topics/{topic}), so list them all.
    allowed = sorted(
        {
            method
            for route in iter_route_contexts(request.app.routes)
            if isinstance(route.original_route, APIRoute)
            and route.matches(request.scope)[0] != Match.NONE
            for method in route.methods or ()
        }
    )
    return JSONResponse({"detail": "Method Not Allowed"}, 405, {"Allow": ", ".join(allowed)})


class SecurityHeaders:
    """Adds CSP (no inline scripts), nosniff and anti-framing headers to every HTTP response.

    The interactive API docs (exactly ``/docs`` and ``/redoc``) load an inline script, so
    they are left without the CSP (still not frameable: ``X-Frame-Options: DENY``).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        strict = path not in ("/docs", "/redoc")  # exactly: "/docs%2F..%2Findex.html" is not

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                headers.append((b"x-frame-options", b"DENY"))
                if strict:
                    headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HeadLimit:
    """Refuses a request whose line and headers exceed MAX_REQUEST_HEAD_BYTES with 431.

    h11 refuses a longer head only when it arrives in pieces; one that arrives in a single
    read (up to 256 KiB) would otherwise reach the app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = len(scope["raw_path"]) + len(scope["query_string"])
            size += sum(len(name) + len(value) + 4 for name, value in scope["headers"])
            if size > MAX_REQUEST_HEAD_BYTES:
                detail = f"request line and headers over {MAX_REQUEST_HEAD_BYTES} bytes"
                response = JSONResponse({"detail": detail}, 431, headers={"Connection": "close"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class PathPrefix:
    """Serves the app under ``prefix`` whether or not the reverse proxy strips it.

    Requests for ``/elog/api/topics`` (prefix kept) and ``/api/topics`` (prefix stripped) both
    reach ``/api/topics``, and ``root_path`` is set so generated URLs carry the prefix.
    """

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        if not prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError(f"root path must start and not end with '/': {prefix!r}")
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            path = scope["path"]
            if path != self.prefix and not path.startswith(self.prefix + "/"):
                path = self.prefix + path
            scope = {**scope, "root_path": self.prefix, "path": path}
        await self.app(scope, receive, send)
