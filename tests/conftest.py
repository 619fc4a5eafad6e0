"""Shared fixtures: a clean environment for Settings, and databases on both backends."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.services import temporary_postgres_database

BACKENDS = ["sqlite", "postgresql"]


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
