"""Backup destinations: a directory, and a real S3-compatible server (moto's server mode)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from payment.backup.destinations import Destination, DestinationError, open_destination
from tests.support.s3 import running_s3

pytestmark = pytest.mark.integration


@pytest.fixture(params=["directory", "s3"])
def destination(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Destination]:
    if request.param == "directory":
        yield open_destination(str(tmp_path / "backups"))
        return
    with running_s3(tmp_path, monkeypatch) as s3:
        yield open_destination(s3.url("musdpay/prod"), endpoint_url=s3.endpoint_url)


def test_objects_round_trip_list_by_prefix_and_delete(destination: Destination, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"\x00musdpay\xff" * 1000)
    destination.put("2026-12-04/backup.bin", source)
    destination.put("2026-12-04/manifest.json", source)
    destination.put("2026-12-05/manifest.json", source)
    assert destination.list() == ["2026-12-04/backup.bin", "2026-12-04/manifest.json", "2026-12-05/manifest.json"]
    assert destination.list("2026-12-04/") == ["2026-12-04/backup.bin", "2026-12-04/manifest.json"]
    back = tmp_path / "back.bin"
    destination.get("2026-12-04/backup.bin", back)
    assert back.read_bytes() == source.read_bytes()
    destination.delete("2026-12-04/backup.bin")
    assert destination.list("2026-12-04/") == ["2026-12-04/manifest.json"]
    with pytest.raises(DestinationError, match=r"no 2026-12-04/backup\.bin"):
        destination.get("2026-12-04/backup.bin", back)


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../outside", "a/../../b"])
def test_keys_stay_inside_the_destination(tmp_path: Path, key: str) -> None:
    destination = open_destination(str(tmp_path / "backups"))
    source = tmp_path / "x"
    source.write_bytes(b"x")
    with pytest.raises(DestinationError, match="not a relative key"):
        destination.put(key, source)


def test_urls_that_are_not_destinations_are_refused() -> None:
    for url in ("s3://", "ftp://host/path"):
        with pytest.raises(DestinationError):
            open_destination(url)
