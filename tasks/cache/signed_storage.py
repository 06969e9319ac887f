"""Cache files that must prove who wrote them: Prefect's local result storage with an HMAC-SHA256 tag on every file.

Step results are Prefect persisted results (cloudpickles, whose loading can run code). Each key's record in the
cache's `keys/` folder (which names the serializer of its result) and each result in `results/` start with a tag
computed with a per-user secret kept outside the project (`~/.config/fuseflow/cache.key`, or
`FUSEFLOW_CACHE_KEY_FILE`), over the file's name (records) and content. A file without a valid tag (planted through a shared `FUSEFLOW_CACHE_DIR` or an archive that includes `.fuseflow/`, damaged, or
written with another user's key) is refused before anything is unpickled: the step computes again and replaces it.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from functools import lru_cache
from pathlib import Path

from typing import Any

from prefect._internal.compatibility.async_dispatch import async_dispatch
from prefect.filesystems import LocalFileSystem
from prefect.serializers import PickleSerializer
from pydantic import Field

KEY_FILE_ENV = "FUSEFLOW_CACHE_KEY_FILE"
MAGIC = b"fuseflow-hmac-sha256:"
TAG_SIZE = 64  # hex characters of an HMAC-SHA256


class UnsignedCacheFile(ValueError):
    """A cache file whose tag is missing or wrong: not written by this user's fuseflow, so never loaded."""


def key_file() -> Path:
    """Where this user's cache secret lives: FUSEFLOW_CACHE_KEY_FILE, else ~/.config/fuseflow/cache.key."""
    configured = os.environ.get(KEY_FILE_ENV)
    if configured:
        return Path(configured).expanduser()
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config_home / "fuseflow" / "cache.key"


@lru_cache(maxsize=8)
def _secret(path: Path) -> bytes:
    """The secret at `path`, created (0600, exclusively: concurrent first runs agree on one) when missing."""
    try:
        data = path.read_bytes().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another run created it first
            return _wait_for_secret(path)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_hex(32).encode())
        return path.read_bytes().strip()
    if len(data) < 32:
        raise UnsignedCacheFile(f"the cache key {path} is empty or too short: delete it (a new one is made) or "
                                f"point {KEY_FILE_ENV} at a good one")
    return data


def _wait_for_secret(path: Path) -> bytes:
    import time

    for _ in range(100):
        data = path.read_bytes().strip()
        if len(data) >= 32:
            return data
        time.sleep(0.05)
    raise UnsignedCacheFile(f"the cache key {path} stays empty: delete it (a new one is made)")


def secret() -> bytes:
    return _secret(key_file().resolve())


def tag(name: str, content: bytes) -> bytes:
    """The hex HMAC of a file's name and content: a tag moved to another key's file does not verify."""
    mac = hmac.new(secret(), name.encode() + b"\0", hashlib.sha256)
    mac.update(content)
    return mac.hexdigest().encode()


def sign(name: str, content: bytes) -> bytes:
    return MAGIC + tag(name, content) + b"\n" + content


def verify(name: str, data: bytes) -> bytes:
    """The content of a signed file, or `UnsignedCacheFile` when its tag is missing or does not match."""
    head = len(MAGIC) + TAG_SIZE
    if not data.startswith(MAGIC) or data[head:head + 1] != b"\n":
        raise UnsignedCacheFile(f"cache file {name} carries no fuseflow signature (planted, damaged or from an "
                                "older fuseflow): not loaded")
    content = data[head + 1:]
    if not hmac.compare_digest(data[len(MAGIC):head], tag(name, content)):
        raise UnsignedCacheFile(f"cache file {name} has a wrong signature (changed after it was written, or "
                                f"written with another user's key, {key_file()}): not loaded")
    return content


class SignedLocalFileSystem(LocalFileSystem):
    """A local folder whose files are signed on write and verified on read: the cache's key records (Prefect allows
    an unsaved block there, not as a task's result storage, hence the signed serializer below for results)."""

    _block_type_name = "fuseflow Signed Local File System"
    _block_type_slug = "fuseflow-signed-local-file-system"

    async def aread_path(self, path: str) -> bytes:
        return verify(Path(path).name, await super().aread_path(path))

    @async_dispatch(aread_path)
    def read_path(self, path: str) -> bytes:
        return verify(Path(path).name, LocalFileSystem.read_path(self, path, _sync=True))

    async def awrite_path(self, path: str, content: bytes) -> str:
        return await super().awrite_path(path, sign(Path(path).name, content))

    @async_dispatch(awrite_path)
    def write_path(self, path: str, content: bytes) -> str:
        return LocalFileSystem.write_path(self, path, sign(Path(path).name, content), _sync=True)


class SignedPickleSerializer(PickleSerializer):
    """Prefect's cloudpickle serializer, with the pickle signed on write and verified before it is unpickled."""

    type: str = Field(default="fuseflow-signed-pickle", frozen=True)

    def dumps(self, obj: Any) -> bytes:
        return sign("result", super().dumps(obj))

    def loads(self, blob: bytes) -> Any:
        return super().loads(verify("result", blob))
