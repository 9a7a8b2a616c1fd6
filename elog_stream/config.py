"""Settings shared by publishers and the service, read from arguments or ``ELOG_*`` variables.

``Settings(...)`` holds exactly the arguments given (else the defaults) and never reads the
environment, so a test or library caller gets what it wrote. ``Settings.from_env(...)`` is the
one way to read ``ELOG_*`` variables; ``settings.replace(...)`` derives a validated copy.
Invalid values raise SettingsError, naming the variable or argument and what is expected.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from .errors import SettingsError
from .images import DEFAULT_MAX_IMAGE_BYTES
from .logbook import validate_author
from .protocol import (
    DEFAULT_HISTORY_BYTES,
    DEFAULT_HISTORY_LENGTH,
    DEFAULT_PREFIX,
    DEFAULT_TTL,
    MAX_HISTORY_LENGTH,
    Keys,
    Limits,
    validate_experiment,
)

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
MIN_TOKEN_LENGTH = 16
_MAKE_TOKEN = 'python -c "import secrets; print(secrets.token_urlsafe())"'

# Each description is what an error message says is expected.
_Seconds = Annotated[float, Field(gt=0, description="a number of seconds > 0")]
_Token = Annotated[
    SecretStr | None,
    Field(repr=False, description=f"a token of at least {MIN_TOKEN_LENGTH} characters"),
]
_List = Annotated[tuple[str, ...], NoDecode]  # from the environment: comma-separated
# Their values are never shown (a webhook URL may hold a token).
_SECRET_FIELDS = frozenset(
    {"view_token", "publish_token", "pin_token", "logbook_webhook"}
)  # their values are never shown


class Settings(BaseSettings):
    """Configuration; ``redis_url`` None means "not configured" (the service then embeds one,
    keeping its data in ``data_dir``, and publishers look for that one; see local.py).

    Frozen. The constructor does not read the environment (see the module docstring) and
    raises SettingsError (a ValueError) for invalid values or unknown names. Build settings
    with the constructor, ``from_env`` or ``replace`` only: ``model_validate`` wraps that error
    in pydantic's (which shows the values given), and ``model_copy`` does not validate.
    """

    model_config = SettingsConfigDict(env_prefix="ELOG_", frozen=True, extra="forbid")

    redis_url: str | None = None
    # The embedded server's data, and where publishers look for it; None: the platform default.
    data_dir: Path | None = Field(None, description="a directory path")
    prefix: str = DEFAULT_PREFIX
    # The experiment of figures published by the matplotlib backend and the %elog magic.
    experiment: str | None = Field(None, description="an experiment name")
    ttl: int = Field(DEFAULT_TTL, gt=0, description="an integer > 0 (seconds)")
    history_length: int = Field(
        DEFAULT_HISTORY_LENGTH,
        ge=0,
        le=MAX_HISTORY_LENGTH,
        description=f"an integer from 0 to {MAX_HISTORY_LENGTH}",
    )
    history_bytes: int = Field(DEFAULT_HISTORY_BYTES, ge=0, description="an integer >= 0")
    # Kept images also go once published this long before the newest; 0: no time limit.
    history_seconds: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="a number of seconds >= 0 (0: no limit)"
    )
    max_image_bytes: int = Field(DEFAULT_MAX_IMAGE_BYTES, gt=0, description="an integer > 0")
    slow_viewer_timeout: _Seconds = 30.0
    redis_timeout: _Seconds = 10.0  # seconds the service waits for any Redis reply
    keepalive_interval: _Seconds = 5.0  # seconds between proofs that the subscription delivers
    reconcile_interval: _Seconds = 30.0  # seconds between scans for changes nobody announced
    # Publish hashes written by the 2014 tool (bare key, no PUBLISH) as they change (legacy.py).
    legacy_keys: bool = Field(False, description="one of 1, true, yes, on, 0, false, no, off")
    legacy_scan_interval: _Seconds = 2.0  # between scans for them where notifications are off
    view_token: _Token = None
    publish_token: _Token = None
    pin_token: _Token = None  # grants viewing and pinning to the logbook
    read_only: bool = Field(False, description="one of 1, true, yes, on, 0, false, no, off")
    allowed_origins: _List = Field((), description="origins, comma-separated")
    publish_rate: float = Field(20.0, gt=0, description="a number > 0 (per second)")
    publish_burst: int = Field(40, ge=1, description="an integer >= 1")
    # Publishers: frames per second per topic; a publish sooner is held, the newest wins.
    max_rate: float | None = Field(None, gt=0, description="a number > 0 (frames per second)")
    # Whose X-Forwarded-For/-Proto are believed: IP addresses or networks; none by default.
    trusted_proxies: _List = Field((), description="IP addresses or CIDR networks, comma-separated")
    session_max_age: _Seconds = 43200.0  # how long a browser login lasts
    body_timeout: _Seconds = 30.0  # how long a client may take to send a request body
    # Request bodies buffered at once, all requests together.
    max_bodies_in_flight_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="an integer >= max_image_bytes"
    )

    # Who pins from Python and the CLI (the logbook's author); None: the OS user name.
    author: str | None = Field(None, description="a name of 1 to 100 characters")
    # Each new logbook entry is POSTed here (webhook.py); None: not forwarded.
    logbook_webhook: str | None = Field(None, repr=False, description="an http:// or https:// URL")

    # Downscaled previews (GET ...image?max_width=N) kept in memory, all together.
    preview_cache_bytes: int = Field(64 * 1024 * 1024, ge=0, description="an integer >= 0")

    def __init__(self, *, _env_names: Mapping[str, str] | None = None, **values: Any) -> None:
        # _env_names (from from_env): fields whose value came from, or may be set by, a variable.
        try:
            super().__init__(**values)
            return
        except ValidationError as exc:
            error = _settings_error(exc, values, _env_names or {})
        raise error  # outside the except: pydantic's error, which shows tokens, is not chained

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # the environment only through from_env

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Settings from ``ELOG_*`` environment variables; non-None ``overrides`` win.

        Lists (``ELOG_ALLOWED_ORIGINS``, ``ELOG_TRUSTED_PROXIES``) are comma-separated; an
        empty ``ELOG_REDIS_URL``, ``ELOG_DATA_DIR``, ``ELOG_EXPERIMENT`` or token means none.
        No ``.env`` or secrets files are read.
        Raises SettingsError naming the variable (or argument), the value and what is expected.
        """
        env = EnvSettingsSource(cls)()
        given = {k: v for k, v in overrides.items() if v is not None}
        names = {field: f"ELOG_{field.upper()}" for field in cls.model_fields if field not in given}
        return cls(_env_names=names, **{**env, **given})

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes``, validated like the constructor (unlike ``model_copy``)."""
        current = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self)(**{**current, **changes})

    @cached_property
    def keys(self) -> Keys:
        return Keys(self.prefix)

    @cached_property
    def limits(self) -> Limits:
        return Limits(self.ttl, self.history_length, self.history_bytes, self.history_seconds)

    @field_validator(
        "redis_url",
        "data_dir",
        "experiment",
        "view_token",
        "publish_token",
        "pin_token",
        "max_rate",
        "author",
        "logbook_webhook",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return None if value == "" else value

    @field_validator("experiment")
    @classmethod
    def _experiment(cls, value: str | None) -> str | None:
        return None if value is None else validate_experiment(value)

    @field_validator("author")
    @classmethod
    def _author(cls, value: str | None) -> str | None:
        return None if value is None else validate_author(value)

    @field_validator("logbook_webhook")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("expected an http:// or https:// URL with a host")
        return value

    @field_validator("data_dir")
    @classmethod
    def _home(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("view_token", "publish_token", "pin_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
            length = len(value.get_secret_value())
            raise ValueError(
                f"a token of {length} characters is too short to resist guessing: expected at "
                f"least {MIN_TOKEN_LENGTH} (make one with {_MAKE_TOKEN})"
            )
        return value

    @field_validator("read_only", "legacy_keys", mode="before")
    @classmethod
    def _blank_is_false(cls, value: Any) -> Any:
        return False if isinstance(value, str) and not value.strip() else value

    @field_validator("allowed_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(origin.strip().rstrip("/") for origin in value)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        networks = []
        for item in value:
            try:
                networks.append(str(ipaddress.ip_network(item.strip(), strict=False)))
            except ValueError:
                raise ValueError(
                    "expected IP addresses or CIDR networks (such as 10.0.0.0/8), "
                    f"comma-separated: {item.strip()!r} is neither"
                ) from None
        return tuple(dict.fromkeys(networks))

    @field_validator("max_bodies_in_flight_bytes")
    @classmethod
    def _fits_an_image(cls, value: int, info: ValidationInfo) -> int:
        limit = info.data.get("max_image_bytes")
        if limit is not None and value < limit:
            raise ValueError(
                f"expected an integer >= max_image_bytes ({limit}): one whole image must fit"
            )
        return value


def _settings_error(
    error: ValidationError, values: Mapping[str, Any], names: Mapping[str, str]
) -> SettingsError:
    """One SettingsError for every invalid field; ``names`` maps fields to env variable names."""
    fields = Settings.model_fields
    problems: dict[str, str] = {}
    for detail in error.errors(include_url=False):
        field = str(detail["loc"][0]) if detail["loc"] else "settings"
        if field in problems:
            continue  # a union type reports each branch; the first says enough
        name = names.get(field, field)
        if field not in fields:
            problems[field] = f"{name}: unknown setting"
            continue
        if field in _SECRET_FIELDS:
            shown = name
        elif field in values:
            shown = f"{name}={values[field]!r}"
        else:
            shown = f"{name}={fields[field].default!r} (the default)"
        if detail["type"] == "value_error":
            problems[field] = f"{shown}: {detail['ctx']['error']}"
        else:
            problems[field] = f"{shown}: expected {fields[field].description}"
    return SettingsError(list(problems.values()))


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
