"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (schemathesis)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
)
from support import RunningService, png

from elog_stream import Publisher

schema = schemathesis.pytest.from_fixture("api_schema")

# A fuzzed body over its route's limit (POST /api/logbook: 64 KiB) is rightly refused with 413,
# before it is parsed; schemathesis's default list of refusals lacks it.
_REFUSALS = SchemathesisConfig().projects.default.checks.negative_data_rejection.expected_statuses
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": [*_REFUSALS, "413"]}}}
)


@pytest.fixture
def api_schema(service: RunningService, publisher: Publisher) -> Iterator[object]:
    publisher.publish("fuzz/known", "e", png("known"))
    yield schemathesis.openapi.from_url(service.url + "openapi.json", config=CONFIG)
    assert service.health().status_code == 200  # the service survived the fuzzing


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_conforms_to_its_schema_and_never_fails(case: schemathesis.Case) -> None:
    if case.method != "POST":
        case.call_and_validate()
        return
    # Fuzzed bodies: whether bytes are an image is beyond JSON Schema, so a 415 for a
    # "schema-valid" body is right; every other check still applies.
    case.call_and_validate(excluded_checks=[positive_data_acceptance])
    # A real image with the same fuzzed names must then be accepted or refused for its names.
    # Unknown query parameters are ignored (as HTTP APIs conventionally do), which the
    # negative-data check would count as accepting invalid input.
    case.body = png("fuzz")
    case.call_and_validate(excluded_checks=[negative_data_rejection])
