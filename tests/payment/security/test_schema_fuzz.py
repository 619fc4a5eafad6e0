"""Schemathesis against the OpenAPI schema of a live server on loopback: no 5xx, answers as documented.

Bounded: a few examples per operation and a deadline on the whole run; anonymous and as an admin API key (so
authenticated paths are reached too), with Stripe played by the emulator over real HTTP. Every operation is
run and the failures of all of them are reported together.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from payment.api import create_app
from payment.auth import apikeys, audit
from payment.auth.principal import Role
from payment.core.metrics import PaymentMetrics
from payment.core.telemetry import Telemetry
from tests.payment.conftest import make_settings
from tests.payment.security.conftest import JWT_KEYS
from tests.support.asgi import serving
from tests.support.services import free_port
from tests.support.stack import API_KEY, running_emulator

pytestmark = pytest.mark.integration

RUN_DEADLINE_SECONDS = 150
_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)


def _checks() -> list[Any]:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

    return [not_a_server_error, response_schema_conformance, status_code_conformance]


def test_the_api_never_answers_5xx_and_always_as_its_schema_says(tmp_path: Path) -> None:
    with running_emulator(tmp_path, webhook_port=None) as emulator:
        app_settings = make_settings(
            f"sqlite:///{tmp_path / 'fuzz.sqlite'}",
            auto_migrate=True,
            jwt_keys=JWT_KEYS,
            delivery_worker_enabled=False,
            rate_limit_enabled=False,  # the fuzzer is one client sending hundreds of requests
            stripe_api_base=emulator.url,
            stripe_secret_key=API_KEY,
            stripe_timeout_seconds=5,
        )
        app = create_app(app_settings, telemetry=Telemetry(metrics=PaymentMetrics(process_collectors=False)))
        with serving(app, free_port()) as url:
            issued = apikeys.create_key(
                factory=app.state.musdpay.factory, name="fuzzer", role=Role.admin, actor=audit.Actor(name="tests")
            )
            schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
            failures = _fuzz(schema, url, issued.key)
    assert not failures, "\n\n".join(failures)


def _runner(operation: Any, url: str, checks: list[Any], headers: dict[str, str], calls: list[int]) -> Any:
    @given(case=operation.as_strategy())
    @_SETTINGS
    def run(case: Any) -> None:
        calls.append(case.call_and_validate(base_url=url, checks=checks, headers=headers).status_code)

    return run


def _fuzz(schema: Any, url: str, key: str) -> list[str]:
    checks = _checks()
    failures: list[str] = []
    calls: list[int] = []
    deadline = time.monotonic() + RUN_DEADLINE_SECONDS
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations
    for headers in ({}, {"X-API-Key": key}):
        for operation in operations:
            if time.monotonic() > deadline:
                failures.append(f"run deadline of {RUN_DEADLINE_SECONDS}s reached before {operation.label}")
                return failures

            try:
                _runner(operation, url, checks, headers, calls)()
            except Exception as exc:  # every operation is fuzzed; their failures are reported together
                who = "admin" if headers else "anonymous"
                detail = "".join(traceback.format_exception_only(type(exc), exc))[:3000]
                failures.append(f"[{who}] {operation.label}:\n{detail}")
    assert len(calls) >= 4 * len(operations), f"only {len(calls)} calls for {len(operations)} operations"
    print(f"schemathesis: {len(operations)} operations, {len(calls)} calls, statuses {sorted(set(calls))}")
    return failures
