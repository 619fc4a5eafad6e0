"""The `musdpay` command as a user runs it: `db upgrade` (`dev` is in test_dev_platform.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from payment.core import migrations
from tests.support.services import ROOT, musdpay_command

pytestmark = pytest.mark.integration


def test_db_upgrade_brings_an_empty_database_to_head(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    result = subprocess.run(
        musdpay_command("db", "upgrade"),
        env={"PATH": "/usr/bin:/bin", "MUSDPAY_DATABASE_URL": url, "MUSDPAY_ENVIRONMENT": "test"},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    head = migrations.head_revision()
    assert f"database at revision {head} (head {head})" in result.stdout
