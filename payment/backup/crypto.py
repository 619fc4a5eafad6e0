"""The backup key, and the sealed stream format of backup files (compressed, then AES-256-GCM in chunks).

The key (`MUSDPAY_BACKUP_ENCRYPTION_KEY`) is 32 random bytes written as 64 hex digits or as base64 (standard or
URL-safe alphabet, `openssl rand -base64 32`). Nothing is encrypted with it directly: HKDF-SHA256 derives

- per file, a data key from the key and a random 32-byte salt kept in the file's header (so the deterministic
  nonces below are never used twice under one key, however many backups are made);
- the manifest key (HMAC-SHA256 of manifests and verification records);
- the fingerprint (16 bytes, hex), recorded in every manifest so that a wrong key is named as such instead of
  looking like a corrupt file.

A sealed file is a header, then chunks:

    header:  b"MUSDBAK1" | salt (32) | chunk size (u32) | backup id length (u16) | backup id (ASCII)
    chunk:   ciphertext length (u32) | AES-256-GCM(data key, nonce, plaintext, aad)
    nonce:   chunk index (u64, big-endian) | final flag (1 byte) | 3 zero bytes
    aad:     the whole header | chunk index | final flag

Each chunk binds its index, whether it is the last one, and the file's header (its backup id and salt): a
truncated file (no final chunk), reordered or dropped chunks, bytes after the final chunk, a chunk from another
backup, or any flipped bit fails authentication. Memory stays bounded by the chunk size whatever the database's.
The plaintext is zlib-compressed as it streams, and decompressed in bounded pieces on the way out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from payment.backup.errors import BackupError

__all__ = [
    "CHUNK_SIZE",
    "BackupKey",
    "SealedFile",
    "open_file",
    "parse_key",
    "seal_file",
    "sha256_of",
]

MAGIC = b"MUSDBAK1"
CHUNK_SIZE = 1 << 20  # plaintext (compressed) bytes per sealed chunk
READ_SIZE = 1 << 20
_TAG = 16
_HEADER = struct.Struct(">32sIH")
_LENGTH = struct.Struct(">I")
_INDEX = struct.Struct(">QB")


def _derive(key: bytes, info: bytes, salt: bytes | None = None, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(key)


@dataclass(frozen=True)
class BackupKey:
    """The operator's key and what is derived from it. `repr` never shows the key."""

    _key: bytes

    def __repr__(self) -> str:
        return f"BackupKey(fingerprint={self.fingerprint})"

    @property
    def fingerprint(self) -> str:
        return _derive(self._key, b"musdpay-backup-fingerprint-v1", length=16).hex()

    def data_key(self, salt: bytes) -> bytes:
        return _derive(self._key, b"musdpay-backup-data-v1", salt=salt)

    def mac(self, payload: bytes) -> str:
        key = _derive(self._key, b"musdpay-backup-manifest-v1")
        return hmac.new(key, payload, hashlib.sha256).hexdigest()

    def check_mac(self, payload: bytes, mac: str) -> bool:
        return hmac.compare_digest(self.mac(payload), mac)


def parse_key(value: str) -> BackupKey:
    """32 bytes as 64 hex digits or base64; anything else is refused with how to make a key."""
    text = value.strip()
    raw: bytes | None = None
    if len(text) == 64:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = None
    if raw is None:
        try:
            padded = text + "=" * (-len(text) % 4)
            raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) != 32:
        raise BackupError(
            "MUSDPAY_BACKUP_ENCRYPTION_KEY must be 32 bytes as 64 hex digits or base64 "
            "(make one with `openssl rand -base64 32`)"
        )
    return BackupKey(raw)


@dataclass(frozen=True)
class SealedFile:
    """What sealing a file measured: the sealed file's size and SHA-256, and the plaintext's."""

    size: int
    sha256: str
    plain_size: int
    plain_sha256: str


def _header(backup_id: str, salt: bytes, chunk_size: int) -> bytes:
    encoded = backup_id.encode("ascii")
    return MAGIC + _HEADER.pack(salt, chunk_size, len(encoded)) + encoded


def _compressed(source: BinaryIO, plain: hashlib._Hash, counter: list[int]) -> Iterator[bytes]:
    compressor = zlib.compressobj(6)
    while block := source.read(READ_SIZE):
        plain.update(block)
        counter[0] += len(block)
        out = compressor.compress(block)
        if out:
            yield out
    yield compressor.flush()


def seal_file(
    source: Path, target: Path, *, key: BackupKey, backup_id: str, chunk_size: int = CHUNK_SIZE
) -> SealedFile:
    """Compress and encrypt `source` into `target` (a new file)."""
    salt = os.urandom(32)
    header = _header(backup_id, salt, chunk_size)
    aead = AESGCM(key.data_key(salt))
    sealed, plain, counter = hashlib.sha256(), hashlib.sha256(), [0]
    size = 0

    with source.open("rb") as reading, target.open("xb") as writing:

        def emit(data: bytes) -> None:
            nonlocal size
            writing.write(data)
            sealed.update(data)
            size += len(data)

        def seal(index: int, chunk: bytes, final: bool) -> None:
            position = _INDEX.pack(index, 1 if final else 0)
            ciphertext = aead.encrypt(position + b"\0\0\0", chunk, header + position)
            emit(_LENGTH.pack(len(ciphertext)) + ciphertext)

        emit(header)
        pending = bytearray()
        index = 0
        for piece in _compressed(reading, plain, counter):
            pending += piece
            while len(pending) > chunk_size:  # keep at least one byte back: the last chunk is the final one
                seal(index, bytes(pending[:chunk_size]), False)
                del pending[:chunk_size]
                index += 1
        seal(index, bytes(pending), True)
        writing.flush()
        os.fsync(writing.fileno())
    return SealedFile(size=size, sha256=sealed.hexdigest(), plain_size=counter[0], plain_sha256=plain.hexdigest())


def _read_exactly(reading: BinaryIO, count: int, what: str) -> bytes:
    data = reading.read(count)
    if len(data) != count:
        raise BackupError(f"the backup file is truncated ({what} cut short)")
    return data


def open_file(source: Path, target: Path, *, key: BackupKey, backup_id: str) -> SealedFile:
    """Authenticate, decrypt and decompress `source` into `target` (a new file). Any tampering, truncation or a
    wrong key raises BackupError; `target` may then hold partial output, which the caller discards."""
    sealed, plain = hashlib.sha256(), hashlib.sha256()
    plain_size = 0
    with source.open("rb") as reading, target.open("xb") as writing:
        magic = reading.read(len(MAGIC))
        if magic != MAGIC:
            raise BackupError("not a musdpay backup file (bad header)")
        fixed = _read_exactly(reading, _HEADER.size, "header")
        salt, chunk_size, id_length = _HEADER.unpack(fixed)
        encoded = _read_exactly(reading, id_length, "header")
        if encoded != backup_id.encode("ascii"):
            raise BackupError(f"the file belongs to backup {encoded.decode('ascii', 'replace')!r}, not {backup_id}")
        header = magic + fixed + encoded
        sealed.update(header)
        aead = AESGCM(key.data_key(salt))
        decompressor = zlib.decompressobj()
        index, final = 0, False
        while not final:
            prefix = reading.read(_LENGTH.size)
            if not prefix:
                raise BackupError("the backup file is truncated (its final chunk is missing)")
            if len(prefix) != _LENGTH.size:
                raise BackupError("the backup file is truncated (chunk length cut short)")
            (length,) = _LENGTH.unpack(prefix)
            if length < _TAG or length > chunk_size + _TAG:
                raise BackupError(f"the backup file is corrupt or tampered with (chunk {index} has a bad length)")
            ciphertext = _read_exactly(reading, length, f"chunk {index}")
            sealed.update(prefix + ciphertext)
            chunk = None
            for flag in (0, 1):  # which of the two it is, is authenticated too
                position = _INDEX.pack(index, flag)
                try:
                    chunk = aead.decrypt(position + b"\0\0\0", ciphertext, header + position)
                except InvalidTag:
                    continue
                final = flag == 1
                break
            if chunk is None:
                raise BackupError(f"the backup file is corrupt or tampered with (chunk {index} fails authentication)")
            data = chunk
            while data:
                out = decompressor.decompress(data, READ_SIZE)
                plain.update(out)
                plain_size += len(out)
                writing.write(out)
                data = decompressor.unconsumed_tail
            index += 1
        if reading.read(1):
            raise BackupError("the backup file is corrupt or tampered with (data after its final chunk)")
        out = decompressor.flush()
        plain.update(out)
        plain_size += len(out)
        writing.write(out)
        if not decompressor.eof:
            raise BackupError("the backup file is corrupt (its compressed stream is incomplete)")
        writing.flush()
        os.fsync(writing.fileno())
    size = source.stat().st_size
    return SealedFile(size=size, sha256=sealed.hexdigest(), plain_size=plain_size, plain_sha256=plain.hexdigest())


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as reading:
        while block := reading.read(READ_SIZE):
            digest.update(block)
    return digest.hexdigest()
