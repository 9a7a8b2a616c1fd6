"""Signed, expiring browser sessions that logout revokes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import secrets
import time
from dataclasses import dataclass

_MAX_REVOKED = 100_000


@dataclass(frozen=True, slots=True)
class Session:
    """What a valid session says: when it ends, who logged in (if they said), whether it may
    pin to the logbook (it was made with a token that may)."""

    expires: int
    name: str | None
    may_pin: bool


class Sessions:
    """Signed, expiring browser sessions: ``<id>.<expiry>.<flags>.<name>.<HMAC-SHA256>``.

    ``flags`` is ``p`` when the session may pin, else empty; ``name`` the user's name in
    URL-safe base64 (empty: none given). Sessions of the earlier form ``<id>.<expiry>.<HMAC>``
    are still accepted. The signing key is derived from every token (``secret``), so holding
    the view token is not enough to sign a session that may pin, changing a token ends every
    session, and every replica with the same tokens accepts them. ``revoke``
    (logout) is remembered by this process until the session would have expired anyway.
    """

    def __init__(self, secret: str, max_age: float) -> None:
        self.max_age = max_age
        self._key = hmac.new(secret.encode(), b"elog-stream session key", "sha256").digest()
        self._revoked: dict[str, int] = {}  # session id -> expiry

    def issue(self, name: str | None = None, may_pin: bool = False) -> str:
        """A new session; ``name`` must be checked by the caller (logbook.validate_author)."""
        encoded = base64.urlsafe_b64encode(name.encode()).decode().rstrip("=") if name else ""
        expires = math.ceil(time.time() + self.max_age)
        session = f"{secrets.token_urlsafe(16)}.{expires}.{'p' if may_pin else ''}.{encoded}"
        return f"{session}.{self._sign(session)}"

    def parse(self, value: str) -> Session | None:
        """What a valid, unrevoked session says; None for anything else."""
        session, _, mac = value.rpartition(".")
        parts = session.split(".")
        if len(parts) == 2:
            parts += ["", ""]
        if len(parts) != 4:
            return None
        ident, expires, flags, encoded = parts
        if not (ident and expires.isdigit() and len(expires) < 16 and flags in ("", "p")):
            return None
        if not hmac.compare_digest(mac, self._sign(session)):
            return None
        if int(expires) <= time.time() or ident in self._revoked:
            return None
        try:
            name = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        except (binascii.Error, ValueError):  # signed by us: cannot happen, unless the key leaked
            return None
        return Session(int(expires), name or None, flags == "p")

    def expiry(self, value: str) -> int | None:
        """The expiry time of a valid, unrevoked session; None for anything else."""
        session = self.parse(value)
        return None if session is None else session.expires

    def revoke(self, value: str) -> None:
        expires = self.expiry(value)
        if expires is None:
            return
        now = time.time()
        self._revoked = {ident: t for ident, t in self._revoked.items() if t > now}
        while len(self._revoked) >= _MAX_REVOKED:  # only holders of the token get this far
            del self._revoked[min(self._revoked, key=self._revoked.__getitem__)]
        self._revoked[value.partition(".")[0]] = expires

    def _sign(self, session: str) -> str:
        return hmac.new(self._key, session.encode(), hashlib.sha256).hexdigest()
