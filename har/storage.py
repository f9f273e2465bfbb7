"""Files on disk: uploaded videos and per-job outputs, under one storage root.

Paths stored in the database are *relative* to the root (``uploads/…``, ``jobs/<job id>/…``), so
the root can move (or be a shared volume mounted elsewhere in another container).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import unicodedata
import uuid
from pathlib import Path
from typing import BinaryIO

from models.hashing import sha256_file  # noqa: F401 (re-exported)

CHUNK = 1 << 20  # 1 MiB
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")


class StorageError(ValueError):
    """A path that escapes the storage root, or a bad name."""


class UploadTooLarge(StorageError):
    def __init__(self, limit: int):
        super().__init__(f"the upload is larger than {limit // (1024 * 1024)} MB")
        self.limit = limit


def safe_filename(name: str | None, default: str = "file", max_len: int = 120) -> str:
    """A file name safe on every filesystem: ASCII letters, digits, ``._-``; no leading dots."""
    name = os.path.basename((name or "").replace("\\", "/"))
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    name = _SAFE.sub("_", name).strip("._-")
    if not name:
        return default
    if len(name) > max_len:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            name = stem[: max_len - len(ext) - 1] + "." + ext
        else:
            name = name[:max_len]
    return name


_EXT = re.compile(r"^[a-z0-9]{1,10}$")


def file_extension(name: str | None) -> str:
    """Lower-case extension without the dot (``"mp4"``), or ``""``.

    Taken from the name as sent (after its last path separator), not from :func:`safe_filename`:
    a name with no ASCII stem such as ``видео.mp4`` still has the extension ``mp4``.
    """
    base = os.path.basename((name or "").replace("\\", "/"))
    ext = Path(base).suffix[1:].lower()
    return ext if _EXT.match(ext) else ""



class Storage:
    """The storage root: ``uploads/`` for videos, ``jobs/<job id>/`` for generated files."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"Storage({str(self.root)!r})"

    # -- paths -------------------------------------------------------------------------------
    def path(self, rel: str | os.PathLike) -> Path:
        """The absolute path of a stored relative path; refuses anything outside the root."""
        rel = str(rel)
        if not rel or os.path.isabs(rel) or "\x00" in rel:
            raise StorageError(f"not a relative storage path: {rel!r}")
        p = (self.root / rel).resolve()
        if p != self.root and self.root not in p.parents:
            raise StorageError(f"path escapes the storage root: {rel!r}")
        return p

    def relative(self, path: str | os.PathLike) -> str:
        """The relative (POSIX) form of an absolute path under the root."""
        p = Path(path).resolve()
        try:
            return p.relative_to(self.root).as_posix()
        except ValueError:
            raise StorageError(f"{path} is not under the storage root") from None

    def exists(self, rel: str) -> bool:
        try:
            return self.path(rel).is_file()
        except StorageError:
            return False

    def job_dir(self, job_id: str, create: bool = True) -> Path:
        """``<root>/jobs/<job id>/`` (created unless ``create=False``)."""
        job_id = str(job_id)
        if not _JOB_ID.match(job_id):
            raise StorageError(f"bad job id: {job_id!r}")
        d = self.root / "jobs" / job_id
        if create:
            d.mkdir(parents=True, exist_ok=True)
        return d

    def job_path(self, job_id: str, name: str) -> tuple[Path, str]:
        """(absolute path, relative path) of a file ``name`` in the job's directory."""
        p = self.job_dir(job_id) / safe_filename(name)
        return p, self.relative(p)

    # -- writing -----------------------------------------------------------------------------
    def save_upload(self, fileobj: BinaryIO, original_filename: str | None,
                    max_bytes: int | None = None) -> tuple[str, str, int]:
        """Stream an uploaded file into ``uploads/`` → ``(relative_path, sha256, size_bytes)``.

        ``fileobj`` is anything with ``read(n)`` (a werkzeug ``FileStorage`` works too). The file is
        written in 1 MiB chunks to a temporary name and renamed when complete, so a reader never
        sees half a file; nothing is kept when the upload fails or exceeds ``max_bytes``.
        """
        stream = getattr(fileobj, "stream", fileobj)
        ext = file_extension(original_filename)
        name = uuid.uuid4().hex + (f".{ext}" if ext else "")
        folder = self.root / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / name
        tmp = folder / f".{name}.part"
        h = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "wb") as out:
                while True:
                    chunk = stream.read(CHUNK)
                    if not chunk:
                        break
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise UploadTooLarge(max_bytes)
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return self.relative(final), h.hexdigest(), size

    def delete(self, rel: str) -> bool:
        try:
            p = self.path(rel)
        except StorageError:
            return False
        if p.is_file():
            p.unlink()
            return True
        return False

    def delete_job_files(self, job_id: str, paths: list[str] | tuple[str, ...] = ()) -> list[str]:
        """Remove the given stored files and the job's directory (``jobs/<job id>/``, whatever is in it).

        Best effort: returns the paths that could not be removed (already-missing files are not errors)."""
        left: list[str] = []
        for rel in paths:
            try:
                p = self.path(rel)
                p.unlink(missing_ok=True)
            except (OSError, StorageError):
                left.append(str(rel))
        try:
            d = self.job_dir(job_id, create=False)
        except StorageError:
            return left
        if d.is_dir():
            shutil.rmtree(d, ignore_errors=True)
            if d.exists():
                left.append(self.relative(d))
        return left
