"""The API SIGKILLed twice during a storm of 2,000 Stripe webhooks (20% duplicated, shuffled) on PostgreSQL:
every session equals Stripe's, nothing lost, nothing applied twice (tests/support/storm.py says how). One module
per database, so that the two storms run on separate workers within the module budget."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.services import temporary_postgres_database
from tests.support.storm import webhook_storm

pytestmark = pytest.mark.integration


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    with temporary_postgres_database() as url:
        yield url


def test_sigkilled_twice_during_a_webhook_storm_nothing_lost_nothing_twice(tmp_path: Path, database: str) -> None:
    figures = webhook_storm(tmp_path, database)
    assert figures["lost"] == 0
    assert figures["duplicated"] == 0
