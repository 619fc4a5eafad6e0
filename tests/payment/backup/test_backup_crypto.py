"""The sealed stream format: what it refuses (truncation at any point, reordered, dropped or foreign chunks,
bytes appended, one flipped bit, another key) and that its memory stays bounded by the chunk size."""

from __future__ import annotations

import os
import struct
import tracemalloc
from pathlib import Path

import pytest

from payment.backup.crypto import MAGIC, parse_key, seal_file
from payment.backup.crypto import open_file as open_sealed
from payment.backup.errors import BackupError

KEY = parse_key(os.urandom(32).hex())
CHUNK = 4096


def _sealed(tmp_path: Path, size: int = 5 * CHUNK + 123, backup_id: str = "20261204T100000Z-abcdef") -> Path:
    plain = tmp_path / "plain"
    plain.write_bytes(os.urandom(size))  # random: does not compress, so it spans several chunks
    sealed = tmp_path / "sealed"
    seal_file(plain, sealed, key=KEY, backup_id=backup_id, chunk_size=CHUNK)
    return sealed


def _chunks(data: bytes) -> tuple[bytes, list[bytes]]:
    """The header and each chunk record (length prefix included)."""
    id_length = struct.unpack(">H", data[len(MAGIC) + 36 : len(MAGIC) + 38])[0]
    start = len(MAGIC) + 38 + id_length
    header, records, position = data[:start], [], start
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        records.append(data[position : position + 4 + length])
        position += 4 + length
    return header, records


def _open(tmp_path: Path, data: bytes, key: object = KEY, backup_id: str = "20261204T100000Z-abcdef") -> bytes:
    source = tmp_path / "candidate"
    source.write_bytes(data)
    target = tmp_path / "out"
    target.unlink(missing_ok=True)
    open_sealed(source, target, key=key, backup_id=backup_id)  # type: ignore[arg-type]
    return target.read_bytes()


def test_round_trip_over_several_chunks(tmp_path: Path) -> None:
    sealed = _sealed(tmp_path)
    assert _open(tmp_path, sealed.read_bytes()) == (tmp_path / "plain").read_bytes()
    _, records = _chunks(sealed.read_bytes())
    assert len(records) >= 5


def test_an_empty_file_round_trips(tmp_path: Path) -> None:
    sealed = _sealed(tmp_path, size=0)
    assert _open(tmp_path, sealed.read_bytes()) == b""


@pytest.mark.parametrize("cut", ["final_chunk", "mid_chunk", "mid_length", "header"])
def test_truncation_is_detected(tmp_path: Path, cut: str) -> None:
    data = _sealed(tmp_path).read_bytes()
    header, records = _chunks(data)
    truncated = {
        "final_chunk": header + b"".join(records[:-1]),  # ends exactly at a chunk boundary
        "mid_chunk": data[: len(data) - 10],
        "mid_length": header + records[0] + records[1][:2],
        "header": data[: len(MAGIC) + 10],
    }[cut]
    with pytest.raises(BackupError, match="truncated"):
        _open(tmp_path, truncated)


def test_reordered_dropped_and_appended_chunks_are_detected(tmp_path: Path) -> None:
    data = _sealed(tmp_path).read_bytes()
    header, records = _chunks(data)
    swapped = header + records[1] + records[0] + b"".join(records[2:])
    dropped = header + records[0] + b"".join(records[2:])
    for candidate in (swapped, dropped):
        with pytest.raises(BackupError, match="tampered"):
            _open(tmp_path, candidate)
    with pytest.raises(BackupError, match="after its final chunk"):
        _open(tmp_path, data + records[-1])


def test_one_flipped_bit_anywhere_is_detected(tmp_path: Path) -> None:
    data = _sealed(tmp_path).read_bytes()
    header, _ = _chunks(data)
    for position in (len(header) + 40, len(data) // 2, len(data) - 1, len(MAGIC) + 3):  # ciphertext, tag, salt
        flipped = bytearray(data)
        flipped[position] ^= 0x01
        with pytest.raises(BackupError):
            _open(tmp_path, bytes(flipped))


def test_a_chunk_of_another_backup_or_another_key_is_refused(tmp_path: Path) -> None:
    data = _sealed(tmp_path).read_bytes()
    with pytest.raises(BackupError, match="belongs to backup"):
        _open(tmp_path, data, backup_id="20261204T100000Z-000000")
    with pytest.raises(BackupError, match="fails authentication"):
        _open(tmp_path, data, key=parse_key(os.urandom(32).hex()))
    (tmp_path / "other").mkdir()
    other = _sealed(tmp_path / "other").read_bytes()
    header, _ = _chunks(data)
    _, foreign = _chunks(other)
    with pytest.raises(BackupError, match="fails authentication"):  # same id, another file's salt
        _open(tmp_path, header + b"".join(foreign))


def test_memory_stays_bounded_by_the_chunk_size(tmp_path: Path) -> None:
    plain = tmp_path / "big"
    with plain.open("wb") as writing:
        for _ in range(24):
            writing.write(os.urandom(1 << 20))
    sealed, out = tmp_path / "big.enc", tmp_path / "big.out"
    tracemalloc.start()
    try:
        seal_file(plain, sealed, key=KEY, backup_id="20261204T100000Z-abcdef")
        open_sealed(sealed, out, key=KEY, backup_id="20261204T100000Z-abcdef")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.stat().st_size == 24 << 20
    assert peak < 12 << 20, f"peak {peak} bytes for a 24 MiB file"


@pytest.mark.parametrize(
    "text",
    [
        "00" * 32,
        "ab" * 32,
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",  # base64 of bytes 0..31
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",  # without padding
        "_-8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # URL-safe alphabet
    ],
)
def test_keys_as_hex_or_base64(text: str) -> None:
    assert len(parse_key(text).fingerprint) == 32


@pytest.mark.parametrize("text", ["", "changeme", "00" * 31, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd", "zz" * 32])
def test_other_keys_are_refused_with_how_to_make_one(text: str) -> None:
    with pytest.raises(BackupError, match="openssl rand -base64 32"):
        parse_key(text)


def test_the_key_never_shows_in_its_repr() -> None:
    text = "ab" * 32
    assert "abab" not in repr(parse_key(text))
