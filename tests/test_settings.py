"""Settings: arguments and ``ELOG_*`` variables, validation, secrets, errors in the CLI."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from support import DEADLINE, cli_args, serve

from elog_stream import AsyncPublisher, ElogError, Publisher
from elog_stream.cli import main
from elog_stream.config import Settings
from elog_stream.embedded import free_port
from elog_stream.errors import SettingsError
from elog_stream.protocol import DEFAULT_PREFIX

TOKEN = "Zm9vYmFyLXRva2VuLXZhbHVl"  # 24 characters
BURST = "ELOG_PUBLISH_BURST='lots': expected an integer >= 1"
NOWHERE = Settings(redis_url="redis://127.0.0.1:1/0")  # never reached: settings fail first


def test_invalid_variable_stops_serve_with_a_message_and_status_2() -> None:
    with serve("--port", str(free_port()), ELOG_PUBLISH_BURST="lots") as server:
        assert server.process.wait(DEADLINE) == 2
    output = "".join(server.drain())
    assert f"elog-stream: error: {BURST}" in output
    assert "Traceback" not in output


def test_invalid_variable_stops_topics_with_a_message_and_status_2() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELOG_")}
    result = subprocess.run(
        [sys.executable, "-m", "elog_stream", *cli_args(NOWHERE, "topics")],
        env={**env, "ELOG_PUBLISH_BURST": "lots", "ELOG_VIEW_TOKEN": "tiny"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert BURST in result.stderr
    assert "ELOG_VIEW_TOKEN: a token of 4 characters is too short" in result.stderr
    assert "tiny" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command",
    [["publish", "x.png", "--topic", "t", "--experiment", "e"], ["grab", "t"], ["topics"],
     ["demo", "--count", "1"]],
    ids=["publish", "grab", "topics", "demo"],
)  # fmt: skip
def test_every_command_exits_2_on_an_invalid_variable(
    command: list[str], monkeypatch, capsys
) -> None:
    monkeypatch.setenv("ELOG_TTL", "-1")
    assert main(cli_args(NOWHERE, *command)) == 2
    assert capsys.readouterr().err == (
        "elog-stream: error: ELOG_TTL='-1': expected an integer > 0 (seconds)\n"
    )


def test_tokens_are_secret(caplog) -> None:
    settings = Settings(view_token=TOKEN, publish_token=TOKEN[::-1])
    assert isinstance(settings.view_token, SecretStr)
    assert settings.view_token.get_secret_value() == TOKEN
    assert settings.publish_token is not None
    assert settings.publish_token.get_secret_value() == TOKEN[::-1]
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("settings: %s %r", settings, settings)
    for shown in (repr(settings), str(settings), settings.model_dump_json(), caplog.text):
        assert TOKEN not in shown
        assert TOKEN[::-1] not in shown


def test_a_short_token_is_refused_without_showing_it(monkeypatch) -> None:
    with pytest.raises(SettingsError) as error:
        Settings(view_token="s3cret")
    message = str(error.value)
    assert message.startswith("view_token: a token of 6 characters is too short")
    assert "secrets.token_urlsafe()" in message
    assert "s3cret" not in message
    assert isinstance(error.value, ValueError) and isinstance(error.value, ElogError)
    monkeypatch.setenv("ELOG_PUBLISH_TOKEN", "s3cret")
    with pytest.raises(SettingsError, match="^ELOG_PUBLISH_TOKEN: a token of 6 char") as error:
        Settings.from_env()
    assert "s3cret" not in str(error.value)


def test_empty_url_and_tokens_mean_none(monkeypatch) -> None:
    for name in ("ELOG_REDIS_URL", "ELOG_VIEW_TOKEN", "ELOG_PUBLISH_TOKEN", "ELOG_READ_ONLY"):
        monkeypatch.setenv(name, "")
    settings = Settings.from_env()
    assert (settings.redis_url, settings.view_token, settings.publish_token) == (None,) * 3
    assert settings.read_only is False


def test_experiment_is_checked_like_a_published_one(monkeypatch) -> None:
    assert Settings.from_env().experiment is None
    monkeypatch.setenv("ELOG_EXPERIMENT", "cxif7214")
    assert Settings.from_env().experiment == "cxif7214"
    monkeypatch.setenv("ELOG_EXPERIMENT", "")
    assert Settings.from_env().experiment is None
    monkeypatch.setenv("ELOG_EXPERIMENT", "run\n7")
    with pytest.raises(SettingsError) as error:
        Settings.from_env()
    assert str(error.value) == (
        "ELOG_EXPERIMENT='run\\n7': experiment 'run\\n7' contains control characters"
    )


def test_the_constructor_ignores_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("ELOG_PREFIX", "from-env:")
    monkeypatch.setenv("ELOG_TTL", "-1")  # invalid, but never read by the constructor
    assert Settings().prefix == DEFAULT_PREFIX
    monkeypatch.setenv("ELOG_TTL", "60")
    settings = Settings.from_env(prefix=None, history_length=3)
    assert (settings.prefix, settings.ttl, settings.history_length) == ("from-env:", 60, 3)
    assert Settings.from_env(prefix="arg:").prefix == "arg:"


def test_variables_are_parsed(monkeypatch) -> None:
    monkeypatch.setenv("ELOG_READ_ONLY", "yes")
    monkeypatch.setenv("ELOG_ALLOWED_ORIGINS", "https://a.example/, https://b.example ,")
    monkeypatch.setenv("ELOG_SESSION_MAX_AGE", "60")
    monkeypatch.setenv("ELOG_BODY_TIMEOUT", "2.5")
    monkeypatch.setenv("ELOG_MAX_BODIES_IN_FLIGHT_BYTES", str(2**30))
    settings = Settings.from_env()
    assert settings.read_only is True
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert (settings.session_max_age, settings.body_timeout) == (60.0, 2.5)
    assert settings.max_bodies_in_flight_bytes == 2**30
    defaults = Settings()
    assert defaults.trusted_proxies == ()
    assert (defaults.session_max_age, defaults.body_timeout) == (43200.0, 30.0)
    assert defaults.max_bodies_in_flight_bytes == 64 * 1024 * 1024


def test_trusted_proxies(monkeypatch) -> None:
    monkeypatch.setenv("ELOG_TRUSTED_PROXIES", " 10.0.0.1, 192.168.7.9/16,::1 ,")
    expected = ("10.0.0.1/32", "192.168.0.0/16", "::1/128")
    assert Settings.from_env().trusted_proxies == expected
    assert Settings(trusted_proxies=("10.0.0.1", "192.168.0.0/16", "::1")).trusted_proxies == (
        expected
    )
    monkeypatch.setenv("ELOG_TRUSTED_PROXIES", "10.0.0.0/8, proxy.example")
    with pytest.raises(SettingsError) as error:
        Settings.from_env()
    assert str(error.value) == (
        "ELOG_TRUSTED_PROXIES='10.0.0.0/8, proxy.example': expected IP addresses or CIDR "
        "networks (such as 10.0.0.0/8), comma-separated: 'proxy.example' is neither"
    )
    with pytest.raises(SettingsError, match="'10.0.0.300' is neither"):
        Settings(trusted_proxies=("10.0.0.300",))


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("ttl", "0", "an integer > 0 (seconds)"),
        ("history_length", "10001", "an integer from 0 to 10000"),
        ("history_bytes", "-1", "an integer >= 0"),
        ("max_image_bytes", "0", "an integer > 0"),
        ("redis_timeout", "0", "a number of seconds > 0"),
        ("slow_viewer_timeout", "soon", "a number of seconds > 0"),
        ("session_max_age", "-5", "a number of seconds > 0"),
        ("body_timeout", "0", "a number of seconds > 0"),
        ("publish_rate", "0", "a number > 0 (per second)"),
        ("publish_burst", "0", "an integer >= 1"),
        ("read_only", "maybe", "one of 1, true, yes, on, 0, false, no, off"),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str, expected: str, monkeypatch):
    variable = f"ELOG_{name.upper()}"
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        Settings.from_env()
    assert str(error.value) == f"{variable}={value!r}: expected {expected}"
    assert error.value.problems == (str(error.value),)


def test_invalid_arguments_name_the_argument() -> None:
    with pytest.raises(SettingsError) as error:
        Settings(ttl=0, publish_burst="lots", colour="red")
    assert error.value.problems == (
        "ttl=0: expected an integer > 0 (seconds)",
        "publish_burst='lots': expected an integer >= 1",
        "colour: unknown setting",
    )


def test_bodies_in_flight_must_hold_one_image(monkeypatch) -> None:
    monkeypatch.setenv("ELOG_MAX_IMAGE_BYTES", str(100 * 2**20))
    with pytest.raises(SettingsError) as error:
        Settings.from_env()
    assert str(error.value) == (
        "ELOG_MAX_BODIES_IN_FLIGHT_BYTES=67108864 (the default): expected an integer >= "
        "max_image_bytes (104857600): one whole image must fit"
    )
    assert Settings(max_image_bytes=10, max_bodies_in_flight_bytes=10).max_bodies_in_flight_bytes


def test_replace_validates_and_keeps_the_rest() -> None:
    settings = Settings(prefix="p:", view_token=TOKEN)
    changed = settings.replace(publish_burst=2, allowed_origins="https://a.example/")
    assert (changed.prefix, changed.publish_burst) == ("p:", 2)
    assert changed.allowed_origins == ("https://a.example",)
    assert changed.view_token == settings.view_token
    assert changed.keys.prefix == "p:"
    with pytest.raises(SettingsError, match="^publish_burst=0: expected an integer >= 1$"):
        settings.replace(publish_burst=0)
    with pytest.raises(SettingsError, match="a token of 5 characters"):
        settings.replace(view_token="short")
    with pytest.raises(ValidationError, match="frozen"):
        settings.ttl = 5  # type: ignore[misc]


def test_keys_and_limits_follow_the_settings() -> None:
    settings = Settings(prefix="k:", ttl=9, history_length=2, history_bytes=100)
    assert settings.keys.topic("a") == settings.replace().keys.topic("a")
    assert settings.keys.prefix == "k:"
    assert (settings.limits.ttl, settings.limits.history_length) == (9, 2)
    assert settings.limits.history_bytes == 100


async def test_publisher_options_are_typed(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        Publisher("redis://localhost", colour="red")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        AsyncPublisher("redis://localhost", colour="red")  # type: ignore[call-arg]
    with pytest.raises(SettingsError, match="^ttl=0: expected an integer > 0"):
        Publisher("redis://localhost", ttl=0)
    with Publisher("redis://localhost", prefix="p:", redis_timeout=2.5) as publisher:
        assert (publisher.settings.prefix, publisher.settings.redis_timeout) == ("p:", 2.5)
    async with AsyncPublisher("redis://localhost", history_length=4, retry_buffer=2) as publisher:
        assert publisher.settings.history_length == 4
