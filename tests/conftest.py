"""Shared fixtures: a clean environment for Settings, and databases on both backends; and how the suite is split
between pytest-xdist workers (`make test` runs `-n 2 --dist loadgroup`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.services import temporary_postgres_database

BACKENDS = ["sqlite", "postgresql"]
TESTS = Path(__file__).parent

# Tests that must share one worker beyond their module: the benchmarks measure (one at a time, so they do not
# load each other's machine share), and the live stack is one per worker session (tests/alerts/livestack.py).
GROUPS = {
    TESTS / "bench": "bench",
    TESTS / "alerts" / "test_live_outage.py": "live-stack",
    TESTS / "dashboards" / "test_live_queries.py": "live-stack",
}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test runs on the same worker as the rest of its module (module fixtures are built once and tests run
    in file order, as without xdist), or of its group above."""
    for item in items:
        path = Path(item.path)
        group = next((name for where, name in GROUPS.items() if path == where or where in path.parents), None)
        item.add_marker(pytest.mark.xdist_group(group or item.nodeid.split("::")[0]))


@pytest.fixture(autouse=True)
def _clean_musdpay_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's exported MUSDPAY_* variables must not leak into what a test configures.
    for name in list(os.environ):
        if name.startswith("MUSDPAY_"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each backend (SQLite file, or a fresh PostgreSQL database)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'musdpay.sqlite'}"
        return
    with temporary_postgres_database() as url:
        yield url
