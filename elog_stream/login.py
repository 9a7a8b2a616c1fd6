"""The browser login: the login page, ``POST /login``, ``POST /logout`` and ``GET /api/session``."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from starlette.responses import FileResponse, RedirectResponse, Response

from .auth import COOKIE, Access, AccessPolicy, Credential, needs, root_path
from .bodies import BodyBudget
from .config import web_directory
from .errors import ElogError, InvalidNameError, RequestTooLargeError
from .logbook import validate_author

_MAX_FORM_BYTES = 4096


def _form_too_large(size: int, limit: int) -> ElogError:
    return RequestTooLargeError(f"the login form is over {limit} bytes")


def _policy(request: Request) -> AccessPolicy:
    policy: AccessPolicy = request.app.state.access
    return policy


PolicyDep = Annotated[AccessPolicy, Depends(_policy)]

router = APIRouter(include_in_schema=False)


class Session(BaseModel):
    """How the caller is identified, for the viewer's log-out control."""

    access_control: bool  # whether any token is configured
    credential: Credential
    grants: list[Access]
    expires_at: float | None = None  # of a browser session
    name: str | None = None  # the name given when logging in (the logbook's author)


@router.get("/login", dependencies=needs(Access.PUBLIC))
async def login_page() -> FileResponse:
    return FileResponse(web_directory() / "login.html")


@router.post("/login", dependencies=needs(Access.PUBLIC))
async def login(request: Request, policy: PolicyDep) -> Response:
    """Check the form's token; on success start a session and go to the viewer.

    The optional ``name`` is kept in the session: it signs the logbook entries pinned with it.
    The correct token is always accepted; failures are limited per client address.
    """
    root = root_path(request.scope)
    bodies: BodyBudget = request.app.state.service.bodies
    async with bodies.read(request, _MAX_FORM_BYTES, _form_too_large) as body:
        form = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=4)
    token = form.get("token", [""])[0]
    name = form.get("name", [""])[0].strip() or None
    if policy.sessions is None:  # viewing is open
        return RedirectResponse(f"{root}/", 303)
    if not policy.token_valid(token):
        client = request.client.host if request.client else "unknown"
        failed = "rate" if policy.login_failures.retry_after(client) else "token"
        return RedirectResponse(f"{root}/login?failed={failed}", 303)
    if name is not None:
        try:
            validate_author(name)
        except InvalidNameError:
            return RedirectResponse(f"{root}/login?failed=name", 303)
    may_pin = Access.PIN in policy.token_identity(token).grants
    response = RedirectResponse(f"{root}/", 303)
    response.set_cookie(
        COOKIE,
        policy.sessions.issue(name, may_pin),
        max_age=int(policy.sessions.max_age),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=f"{root}/",
    )
    return response


@router.post("/logout", dependencies=needs(Access.PUBLIC))
async def logout(request: Request, policy: PolicyDep) -> Response:
    """End the browser session (revoked, not only forgotten) and go to the login page."""
    cookie = request.cookies.get(COOKIE)
    if cookie is not None and policy.sessions is not None:
        policy.sessions.revoke(cookie)
    root = root_path(request.scope)
    response = RedirectResponse(f"{root}/login", 303)
    response.delete_cookie(COOKIE, path=f"{root}/")
    return response


@router.get("/api/session", dependencies=needs(Access.VIEW), include_in_schema=True)
async def session(request: Request, policy: PolicyDep) -> Session:
    """How this caller is identified: whether access control is on, what it grants, and the
    name given when logging in."""
    identity = policy.identify(request)
    session = policy.session(request) if identity.credential is Credential.SESSION else None
    return Session(
        access_control=policy.enabled,
        credential=identity.credential,
        grants=sorted(identity.grants - {Access.PUBLIC}),
        expires_at=None if session is None else session.expires,
        name=None if session is None else session.name,
    )
