"""`musdpay backup` to a real S3-compatible server (moto's server mode): both databases there and back."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from tests.support.backups import round_trip
from tests.support.s3 import REGION, running_s3

pytestmark = pytest.mark.integration


def test_round_trip_to_s3(database_url: str, target_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running_s3(tmp_path, monkeypatch) as s3:
        backup_id = round_trip(database_url, target_url, s3.url("musdpay/prod"), s3.endpoint_url)
        client = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name=REGION)
        keys = sorted(item["Key"] for item in client.list_objects_v2(Bucket=s3.bucket)["Contents"])
        assert keys[0].startswith(f"musdpay/prod/{backup_id}/database.")
        assert keys[1:] == [f"musdpay/prod/{backup_id}/manifest.json", f"musdpay/prod/{backup_id}/verified.json"]
