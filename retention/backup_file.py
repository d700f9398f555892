"""The encrypted backup file: streaming, chunked AES-256-GCM under QUANYI_BACKUP_KEY.

Layout: a 20-byte header — magic "QYB1", the key id (first 8 bytes of SHA-256 of the key, so
the right key is picked and a wrong one is named as such), an 8-byte random nonce prefix —
then chunks of 64 KiB of plaintext, each sealed on its own (ciphertext + 16-byte tag). Chunk i
uses the nonce prefix | i (32-bit counter), and its associated data binds the backup id, the
chunk index and whether it is the last chunk. So a chunk cannot be moved within a file or to
another backup, and cutting a file at a chunk boundary, or appending to it, fails to decrypt
instead of yielding a shorter or longer database. Memory stays flat whatever the size.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

MAGIC = b"QYB1"
CHUNK = 64 * 1024
TAG = 16
_KID = 8
_PREFIX = 8
HEADER = len(MAGIC) + _KID + _PREFIX


class BackupError(Exception):
    """A backup cannot be taken, read or restored; the message says why and what to do."""


class BackupKeyError(BackupError):
    """QUANYI_BACKUP_KEY is missing, malformed, or not the key the file was encrypted with."""


class BackupCorrupt(BackupError):
    """The file is not what was written: changed, truncated, extended, or not a backup."""


@dataclass(frozen=True)
class BackupKey:
    kid: bytes
    aead: AESGCM


@cache
def _keys(raw: tuple[str, ...]) -> tuple[BackupKey, ...]:
    keys = []
    for i, text in enumerate(raw):
        try:
            key = base64.b64decode(text, validate=True)
        except ValueError:
            raise BackupKeyError(f"QUANYI_BACKUP_KEY entry {i + 1} is not base64.") from None
        if len(key) != 32:
            raise BackupKeyError(f"QUANYI_BACKUP_KEY entry {i + 1} must decode to 32 bytes.")
        keys.append(BackupKey(hashlib.sha256(key).digest()[:_KID], AESGCM(key)))
    if not keys:
        raise BackupKeyError("QUANYI_BACKUP_KEY is empty.")
    return tuple(keys)


def backup_keys() -> tuple[BackupKey, ...]:
    """The configured keys: the first encrypts, every one decrypts."""
    raw = settings.QUANYI_BACKUP_KEY
    return _keys(tuple([raw] if isinstance(raw, str) else raw))


def generate_backup_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _nonce(prefix: bytes, index: int) -> bytes:
    if index >= 2**32:
        raise BackupError("backup too large for one file (more than 2^32 chunks)")
    return prefix + index.to_bytes(4, "big")


def _aad(backup_id: uuid.UUID, index: int, final: bool) -> bytes:
    return b"quanyi-backup:1:" + backup_id.bytes + index.to_bytes(8, "big") + (b"\x01" if final else b"\x00")


def _read_exact(read: Callable[[int], bytes], size: int) -> bytes:
    """`size` bytes, fewer only at the end (a pipe may hand out less per read)."""
    parts: list[bytes] = []
    want = size
    while want:
        part = read(want)
        if not part:
            break
        parts.append(part)
        want -= len(part)
    return b"".join(parts)


@dataclass(frozen=True)
class Digests:
    plaintext_sha256: str
    sha256: str  # of the file as stored (the ciphertext)
    size: int  # bytes stored


def encrypt_stream(read: Callable[[int], bytes], out: BinaryIO, *, backup_id: uuid.UUID) -> Digests:
    """Encrypt everything `read` yields into `out`, chunk by chunk."""
    key = backup_keys()[0]
    prefix = os.urandom(_PREFIX)
    plain, stored = hashlib.sha256(), hashlib.sha256()
    size = 0

    def emit(data: bytes) -> None:
        nonlocal size
        out.write(data)
        stored.update(data)
        size += len(data)

    emit(MAGIC + key.kid + prefix)
    current = _read_exact(read, CHUNK)
    index = 0
    while True:
        # Read one chunk ahead: the last chunk must know it is the last.
        following = _read_exact(read, CHUNK) if len(current) == CHUNK else b""
        final = not following
        plain.update(current)
        emit(key.aead.encrypt(_nonce(prefix, index), current, _aad(backup_id, index, final)))
        if final:
            break
        current, index = following, index + 1
    return Digests(plain.hexdigest(), stored.hexdigest(), size)


@dataclass
class Decrypted:
    """Filled in as `decrypt_stream` is consumed."""

    plaintext_sha256: str = ""
    sha256: str = ""
    size: int = 0


def decrypt_stream(
    read: Callable[[int], bytes], *, backup_id: uuid.UUID, result: Decrypted | None = None
) -> Iterator[bytes]:
    """Yield the plaintext chunk by chunk; raise BackupCorrupt at the first chunk that does not
    authenticate, BackupKeyError when no configured key made the file. `result` receives the
    digests once the last chunk has been read."""
    stored = hashlib.sha256()
    plain = hashlib.sha256()
    header = _read_exact(read, HEADER)
    stored.update(header)
    if len(header) < HEADER or not header.startswith(MAGIC):
        raise BackupCorrupt("not a Quanyi backup file (no header)")
    kid, prefix = header[len(MAGIC) : len(MAGIC) + _KID], header[len(MAGIC) + _KID :]
    key = next((k for k in backup_keys() if k.kid == kid), None)
    if key is None:
        raise BackupKeyError(
            f"encrypted with another backup key (id {kid.hex()}), not one in QUANYI_BACKUP_KEY "
            f"(ids {', '.join(k.kid.hex() for k in backup_keys())})"
        )
    size = HEADER
    block = _read_exact(read, CHUNK + TAG)
    index = 0
    while True:
        following = _read_exact(read, CHUNK + TAG) if len(block) == CHUNK + TAG else b""
        final = not following
        stored.update(block)
        size += len(block)
        if len(block) < TAG:
            raise BackupCorrupt(f"truncated at chunk {index}")
        try:
            data = key.aead.decrypt(_nonce(prefix, index), block, _aad(backup_id, index, final))
        except InvalidTag:
            raise BackupCorrupt(
                f"chunk {index} does not authenticate: the file was changed, cut short or extended, "
                "or belongs to another backup"
            ) from None
        plain.update(data)
        yield data
        if final:
            break
        block, index = following, index + 1
    if result is not None:
        result.plaintext_sha256, result.sha256, result.size = plain.hexdigest(), stored.hexdigest(), size
