"""Local artifact folders as files: where a run's or a model's artifacts lie on disk, and hard-linked copies of
them (artifacts are never changed in place, so a link is as good as a copy and costs nothing)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse
from urllib.request import url2pathname


def local_artifact_dir(artifact_uri: Optional[str]) -> Optional[Path]:
    """The folder of an artifact URI when it is local files, else None."""
    if not artifact_uri:
        return None
    parsed = urlparse(artifact_uri)
    if parsed.scheme not in ("file", ""):
        return None
    return Path(url2pathname(parsed.path))


def link_or_copy(source: str, target: str) -> None:
    """A hard link where the file system allows it, else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
