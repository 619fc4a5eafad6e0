"""Retention: `prune` keeps the newest backup of each of the last N days and M months that have one, and
nothing else; incomplete backups older than the newest good one go too, unreadable ones are left alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from payment.backup.crypto import parse_key
from payment.backup.destinations import open_destination
from payment.backup.service import create_backup, select_kept
from tests.support.backups import new_key, run_backup, seed_payments


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_the_default_policy_keeps_30_days_and_12_months() -> None:
    # Every 6 hours from 2025-01-01 to 2026-03-15 18:00.
    created: dict[str, datetime] = {}
    moment = _at("2025-01-01T00:00:00")
    while moment <= _at("2026-03-15T18:00:00"):
        created[moment.isoformat()] = moment
        moment += timedelta(hours=6)
    kept = select_kept(created, keep_daily=30, keep_monthly=12)

    days = {(_at("2026-03-15T18:00:00") - timedelta(days=n)).isoformat() for n in range(30)}  # 02-14 .. 03-15
    month_ends = ["2026-02-28", "2026-01-31", "2025-12-31", "2025-11-30", "2025-10-31", "2025-09-30"]
    month_ends += ["2025-08-31", "2025-07-31", "2025-06-30", "2025-05-31", "2025-04-30"]  # with 2026-03: 12
    months = {f"{day}T18:00:00+00:00" for day in month_ends}
    assert kept == days | months
    assert len(kept) == 30 + 10  # 2026-03's and 2026-02's newest are among the days


def test_the_newest_backup_of_a_day_is_the_one_kept() -> None:
    created = {name: _at(f"2026-03-0{name[0]}T{name[1:]}:00:00") for name in ("110", "123", "203", "215", "221")}
    assert select_kept(created, keep_daily=2, keep_monthly=0) == {"123", "221"}
    assert select_kept(created, keep_daily=1, keep_monthly=1) == {"221"}
    assert select_kept({}, keep_daily=3, keep_monthly=3) == set()


@pytest.mark.integration
def test_prune_deletes_exactly_what_the_policy_drops(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.sqlite'}"
    seed_payments(url, 2)
    key = new_key()
    dest = tmp_path / "backups"
    destination = open_destination(str(dest))
    times = [
        "2025-11-20T03:00:00",
        "2025-12-05T03:00:00",
        "2025-12-20T03:00:00",  # month 2025-12's newest
        "2026-01-10T03:00:00",  # month 2026-01's newest
        "2026-02-01T03:00:00",
        "2026-02-01T15:00:00",  # day 2026-02-01's newest
        "2026-02-02T03:00:00",  # a day's only one
        "2026-02-03T01:00:00",
        "2026-02-03T23:00:00",  # the newest of all
    ]
    ids = {at: create_backup(url, destination, parse_key(key), now=_at(at)).id for at in times}
    incomplete_old = f"{ids['2026-01-10T03:00:00'][:16]}-ffffff"
    (dest / incomplete_old).mkdir()
    (dest / incomplete_old / "database.sqlite.enc").write_bytes(b"cut short")
    foreign = create_backup(url, destination, parse_key(new_key()), now=_at("2025-10-01T00:00:00")).id

    result = run_backup(
        "prune", "--dest", str(dest), "--keep-daily", "3", "--keep-monthly", "3", database_url=url, key=key
    )
    assert result.code == 0, result.stderr
    kept = {"2025-12-20T03:00:00", "2026-01-10T03:00:00", "2026-02-01T15:00:00", "2026-02-02T03:00:00"}
    kept.add("2026-02-03T23:00:00")
    remaining = sorted(path.name for path in dest.iterdir() if path.is_dir() and any(path.iterdir()))
    assert remaining == sorted([ids[at] for at in kept] + [foreign])
    assert result.last_line == "kept 5, deleted 5"
    assert foreign in result.stderr  # left for an operator: made with another key

    again = run_backup(
        "prune", "--dest", str(dest), "--keep-daily", "3", "--keep-monthly", "3", database_url=url, key=key
    )
    assert again.last_line == "kept 5, deleted 0"
