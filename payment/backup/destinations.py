"""Where backups live: a directory, or an S3-compatible bucket (AWS S3, MinIO, moto's server), by URL.

    destination = open_destination("s3://bucket/prefix", endpoint_url=settings.backup_s3_endpoint_url)
    destination.put("2026-12-04T10-00-00Z/manifest.json", path)    # an object from a local file
    destination.get("2026-12-04T10-00-00Z/manifest.json", path)    # back into a local file
    destination.list("2026-12-04T10-00-00Z/")                      # keys under a prefix, sorted
    destination.delete("2026-12-04T10-00-00Z/manifest.json")

Keys are relative, `/`-separated. A directory destination writes each object to a temporary file in the same
directory and renames it into place (an object is there whole or not at all, as in S3). S3 credentials come from
boto3's usual chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, an instance role); never from here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

__all__ = ["Destination", "DestinationError", "DirectoryDestination", "S3Destination", "open_destination"]


class DestinationError(RuntimeError):
    """A destination URL that cannot be used, or an object that is not there."""


class Destination(Protocol):
    @property
    def url(self) -> str: ...

    def put(self, key: str, source: Path) -> None: ...

    def get(self, key: str, target: Path) -> None:
        """Raises DestinationError when there is no such object."""
        ...

    def list(self, prefix: str = "") -> list[str]: ...

    def delete(self, key: str) -> None: ...


def _checked(key: str) -> str:
    path = PurePosixPath(key)
    if not key or path.is_absolute() or ".." in path.parts:
        raise DestinationError(f"not a relative key: {key!r}")
    return str(path)


@dataclass
class DirectoryDestination:
    root: Path

    @property
    def url(self) -> str:
        return str(self.root)

    def put(self, key: str, source: Path) -> None:
        target = self.root / _checked(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        os.close(descriptor)
        try:
            shutil.copyfile(source, temporary)
            with open(temporary, "rb") as written:
                os.fsync(written.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def get(self, key: str, target: Path) -> None:
        source = self.root / _checked(key)
        if not source.is_file():
            raise DestinationError(f"no {key} in {self.url}")
        shutil.copyfile(source, target)

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        keys = (
            path.relative_to(self.root).as_posix()
            for path in self.root.rglob("*")
            if path.is_file() and not path.name.startswith(".")
        )
        return sorted(key for key in keys if key.startswith(prefix))

    def delete(self, key: str) -> None:
        (self.root / _checked(key)).unlink(missing_ok=True)


@dataclass
class S3Destination:
    bucket: str
    prefix: str
    client: S3Client

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{_checked(key)}" if self.prefix else _checked(key)

    def put(self, key: str, source: Path) -> None:
        self.client.upload_file(str(source), self.bucket, self._key(key))

    def get(self, key: str, target: Path) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.download_file(self.bucket, self._key(key), str(target))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey"}:
                raise DestinationError(f"no {key} in {self.url}") from exc
            raise

    def list(self, prefix: str = "") -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=base + prefix):
            keys.extend(item["Key"][len(base) :] for item in page.get("Contents", []) if "Key" in item)
        return sorted(keys)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))


def open_destination(url: str, *, endpoint_url: str | None = None) -> Destination:
    """`s3://bucket[/prefix]` (with `endpoint_url` for MinIO, moto and other S3-compatible servers), or a path."""
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise DestinationError(f"{url}: no bucket (s3://bucket/prefix)")
        import boto3  # only deployments that back up to S3 load it

        client = boto3.client("s3", endpoint_url=endpoint_url or None)
        return S3Destination(bucket=parts.netloc, prefix=parts.path.strip("/"), client=client)
    if parts.scheme not in {"", "file"}:
        raise DestinationError(f"{url}: a directory or s3://bucket/prefix")
    return DirectoryDestination(Path(parts.path if parts.scheme == "file" else url))
