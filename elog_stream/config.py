"""Settings shared by publishers and the service, read from arguments or ``ELOG_*`` variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .images import DEFAULT_MAX_IMAGE_BYTES
from .protocol import (
    DEFAULT_HISTORY_BYTES,
    DEFAULT_HISTORY_LENGTH,
    DEFAULT_PREFIX,
    DEFAULT_TTL,
    MAX_HISTORY_LENGTH,
    Keys,
    Limits,
)

DEFAULT_REDIS_URL = "redis://localhost:6379/0"


@dataclass(frozen=True)
class Settings:
    """Configuration; ``redis_url`` None means "not configured" (the service then embeds one)."""

    redis_url: str | None = None
    prefix: str = DEFAULT_PREFIX
    ttl: int = DEFAULT_TTL
    history_length: int = DEFAULT_HISTORY_LENGTH
    history_bytes: int = DEFAULT_HISTORY_BYTES
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    slow_viewer_timeout: float = 30.0
    redis_timeout: float = 10.0  # seconds the service waits for any Redis reply
    keepalive_interval: float = 5.0  # seconds between proofs that the subscription delivers
    reconcile_interval: float = 30.0  # seconds between scans for changes nobody announced
    view_token: str | None = field(default=None, repr=False)
    publish_token: str | None = field(default=None, repr=False)
    read_only: bool = False
    allowed_origins: tuple[str, ...] = ()
    publish_rate: float = 20.0
    publish_burst: int = 40
    keys: Keys = field(init=False)
    limits: Limits = field(init=False)

    def __post_init__(self) -> None:
        if self.ttl <= 0:
            raise ValueError(f"ttl must be a positive number of seconds, not {self.ttl}")
        if self.max_image_bytes <= 0:
            raise ValueError(f"max_image_bytes must be positive, not {self.max_image_bytes}")
        for name in ("redis_timeout", "keepalive_interval", "reconcile_interval"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        if not 0 <= self.history_length <= MAX_HISTORY_LENGTH:
            raise ValueError(f"history_length must be from 0 to {MAX_HISTORY_LENGTH}")
        if self.history_bytes < 0:
            raise ValueError("history_bytes must not be negative")
        object.__setattr__(self, "keys", Keys(self.prefix))
        object.__setattr__(
            self, "limits", Limits(self.ttl, self.history_length, self.history_bytes)
        )

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from ``ELOG_*`` environment variables; non-None ``overrides`` win."""
        env = os.environ
        values: dict[str, object] = {
            "redis_url": env.get("ELOG_REDIS_URL") or None,
            "prefix": env.get("ELOG_PREFIX", DEFAULT_PREFIX),
            "ttl": int(env.get("ELOG_TTL", DEFAULT_TTL)),
            "history_length": int(env.get("ELOG_HISTORY_LENGTH", DEFAULT_HISTORY_LENGTH)),
            "history_bytes": int(env.get("ELOG_HISTORY_BYTES", DEFAULT_HISTORY_BYTES)),
            "max_image_bytes": int(env.get("ELOG_MAX_IMAGE_BYTES", DEFAULT_MAX_IMAGE_BYTES)),
            "slow_viewer_timeout": float(env.get("ELOG_SLOW_VIEWER_TIMEOUT", 30.0)),
            "redis_timeout": float(env.get("ELOG_REDIS_TIMEOUT", 10.0)),
            "keepalive_interval": float(env.get("ELOG_KEEPALIVE_INTERVAL", 5.0)),
            "reconcile_interval": float(env.get("ELOG_RECONCILE_INTERVAL", 30.0)),
            "view_token": env.get("ELOG_VIEW_TOKEN") or None,
            "publish_token": env.get("ELOG_PUBLISH_TOKEN") or None,
            "read_only": env.get("ELOG_READ_ONLY", "").lower() in ("1", "true", "yes", "on"),
            "allowed_origins": tuple(
                origin.strip().rstrip("/")
                for origin in env.get("ELOG_ALLOWED_ORIGINS", "").split(",")
                if origin.strip()
            ),
            "publish_rate": float(env.get("ELOG_PUBLISH_RATE", 20.0)),
            "publish_burst": int(env.get("ELOG_PUBLISH_BURST", 40)),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def redis_client_options(timeout: float) -> dict[str, Any]:
    """Options of every redis-py client here: no silent retries, bounded waits.

    redis-py retries failed commands by default; a publish retried after a timeout could be
    stored twice, so failures surface at once and each caller decides (see errors.py).
    """
    return {
        "socket_connect_timeout": 5,
        "socket_timeout": timeout,
        "socket_keepalive": True,
        "retry": None,  # redis-py then makes one try
    }


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe to print and log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def web_directory() -> Path:
    """The viewer's static files: packaged in the wheel, or ``web/`` of a source checkout."""
    here = Path(__file__).parent
    packaged = here / "web"
    return packaged if packaged.is_dir() else here.parent / "web"
