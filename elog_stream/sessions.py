"""Signed, expiring browser sessions that logout revokes."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time

_MAX_REVOKED = 100_000


class Sessions:
    """Signed, expiring browser sessions: ``<id>.<expiry>.<HMAC-SHA256>``.

    The signing key is derived from the view token, so changing the token ends every session
    and every replica with the same token accepts them. ``revoke`` (logout) is remembered by
    this process until the session would have expired anyway.
    """

    def __init__(self, view_token: str, max_age: float) -> None:
        self.max_age = max_age
        self._key = hmac.new(view_token.encode(), b"elog-stream session key", "sha256").digest()
        self._revoked: dict[str, int] = {}  # session id -> expiry

    def issue(self) -> str:
        session = f"{secrets.token_urlsafe(16)}.{math.ceil(time.time() + self.max_age)}"
        return f"{session}.{self._sign(session)}"

    def expiry(self, value: str) -> int | None:
        """The expiry time of a valid, unrevoked session; None for anything else."""
        session, _, mac = value.rpartition(".")
        ident, _, expires = session.partition(".")
        if not (ident and expires.isdigit() and len(expires) < 16):
            return None
        if not hmac.compare_digest(mac, self._sign(session)):
            return None
        if int(expires) <= time.time() or ident in self._revoked:
            return None
        return int(expires)

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
