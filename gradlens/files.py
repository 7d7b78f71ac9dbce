"""Atomic file writes: after a crash a file holds either its old or its new bytes, never a mix. The lowest layer
of gradlens (standard library only): the run store (`gradlens.runs`) and the audit's report.json both use it."""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Iterator


@contextlib.contextmanager
def atomic(path: Path) -> Iterator[BinaryIO]:
    """Yield a hidden temporary file beside `path`; on success fsync it and rename it onto `path`, else delete it."""
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise ValueError(f"cannot write to {path}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise ValueError(f"cannot write to {path}: {e.strerror or e}") from e
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes_atomic(path, data: bytes) -> None:
    """Replace `path` by `data` atomically: after a crash it holds either the old or the new bytes."""
    with atomic(Path(path)) as f:
        f.write(data)
