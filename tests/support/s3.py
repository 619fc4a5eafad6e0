"""A real S3-compatible server for tests: moto in server mode (`moto_server`, installed with the dev extras),
on a free loopback port, with throwaway credentials, and a bucket of the test's own."""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from tests.support.services import free_port, require, start_process, wait_http_ok

__all__ = ["S3Server", "running_s3"]

# moto accepts any credentials; boto3 needs some, and never the machine's real ones.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "musdpay-test", "AWS_SECRET_ACCESS_KEY": "musdpay-test-secret"}
REGION = "us-east-1"


@dataclass
class S3Server:
    endpoint_url: str
    bucket: str

    def url(self, prefix: str = "") -> str:
        return f"s3://{self.bucket}/{prefix}".rstrip("/")


def _binary() -> str | None:
    beside = Path(sys.executable).with_name("moto_server")
    return str(beside) if beside.exists() else shutil.which("moto_server")


@contextmanager
def running_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """moto's S3 server with a fresh bucket; boto3 in this process (and children given os.environ) reaches it
    with the test credentials."""
    binary = _binary()
    require(binary is not None, "moto_server (pip install 'moto[server]', in the dev extras)")
    assert binary is not None
    port = free_port()
    process = start_process(
        [binary, "-H", "127.0.0.1", "-p", str(port)], env=CREDENTIALS, log_path=tmp_path / f"moto-{port}.log"
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{endpoint}/moto-api/", process)
        for name, value in {**CREDENTIALS, "AWS_DEFAULT_REGION": REGION}.items():
            monkeypatch.setenv(name, value)
        bucket = f"musdpay-test-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=endpoint, region_name=REGION).create_bucket(Bucket=bucket)
        yield S3Server(endpoint_url=endpoint, bucket=bucket)
    finally:
        process.stop()
