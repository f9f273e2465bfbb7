"""Free space on the storage volume, and telling a full disk apart from other errors.

The web app refuses an upload (HTTP 507) when storing it would leave less than ``HAR_MIN_FREE_MB`` free on the
storage volume (:func:`check_free_space`); the workers fail a job with a reason people can read when the disk
fills while a stage writes (:func:`is_disk_full`, :func:`disk_full_reason`).
"""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

MB = 1024 * 1024

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# how a full disk reads where no errno is left: the C library's text (an encoder's stderr), SQLite's error
_FULL_TEXTS = ("no space left on device", "disk quota exceeded", "database or disk is full")
_PG_DISK_FULL = "53100"  # PostgreSQL's SQLSTATE disk_full


class LowDiskSpace(Exception):
    """Storing ``incoming_bytes`` would leave less than ``min_free_bytes`` free on the volume."""

    def __init__(self, free_bytes: int, incoming_bytes: int, min_free_bytes: int):
        self.free_bytes, self.incoming_bytes, self.min_free_bytes = free_bytes, incoming_bytes, min_free_bytes
        super().__init__(f"{free_bytes / MB:.0f} MB free, {incoming_bytes / MB:.1f} MB incoming, "
                         f"at least {min_free_bytes / MB:.0f} MB must stay free")


def free_bytes(path: str | os.PathLike) -> int:
    """Bytes free for this process on the volume holding ``path`` (its nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p.parent != p:
        p = p.parent
    return shutil.disk_usage(p).free


def check_free_space(path: str | os.PathLike, min_free_mb: float, incoming_bytes: int | None = None) -> int:
    """Raise :class:`LowDiskSpace` when writing ``incoming_bytes`` (unknown: 0) on the volume of ``path`` would
    leave less than ``min_free_mb`` MB free; else return the free bytes."""
    free = free_bytes(path)
    incoming = max(0, int(incoming_bytes or 0))
    min_free = max(0, int(min_free_mb * MB))
    if free - incoming < min_free:
        raise LowDiskSpace(free, incoming, min_free)
    return free


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an error it wraps (a SQLAlchemy error's ``orig``, ``__cause__``, ``__context__``), says
    the disk or the quota is full: ENOSPC/EDQUOT, SQLite's "database or disk is full", PostgreSQL's disk_full."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        if _PG_DISK_FULL in (getattr(exc, "sqlstate", None), getattr(exc, "pgcode", None)):
            return True
        text = str(exc).lower()
        if any(t in text for t in _FULL_TEXTS):
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    return False


def disk_full_reason(stage: str) -> str:
    """The reason a job failed because the disk filled during ``stage``."""
    return (f"The server ran out of disk space during the {stage} stage, so its results could not be written. "
            f"Run the job again once space has been freed.")
