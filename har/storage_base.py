"""The storage interface both backends implement (:class:`BaseStorage`), and what they share: keys and their checks,
file names, media types, :class:`StoredObject`, :class:`StagedUpload` and the errors. :mod:`har.storage` (local files,
and :func:`~har.storage.open_storage`, which picks the backend) and :mod:`har.storage_s3` (an S3-compatible bucket)
both build on this module, which imports neither."""
from __future__ import annotations

import hashlib
import mimetypes
import os
import posixpath
import re
import shutil
import tempfile
import time
import unicodedata
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Iterator

from har.processes import host_name, pid_alive
from models.hashing import sha256_file  # noqa: F401 (re-exported)

CHUNK = 1 << 20  # 1 MiB
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")


class StorageError(ValueError):
    """A path that escapes the storage root, or a bad name."""


class NotStored(StorageError, FileNotFoundError):
    """The key names nothing stored."""


class Changed(StorageError):
    """The stored file was replaced while it was being read (its ETag no longer matches)."""


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



_TEMP_DIR = re.compile(r"@([^@/]+)@p(\d+)-[a-z0-9_]+$")  # <job id>-@<host>@p<pid>-<random>: BaseStorage.temp_dir


def _temp_dir_host() -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", host_name()) or "host"


def check_key(key: str | os.PathLike) -> str:
    """``key`` as a storage key: a relative POSIX path without empty, ``.`` or ``..`` parts (else StorageError)."""
    key = os.fspath(key) if key is not None else ""
    if not isinstance(key, str) or not key or "\x00" in key or "\\" in key or key.startswith("/"):
        raise StorageError(f"not a relative storage key: {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise StorageError(f"not a relative storage key: {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """A key prefix naming a folder: ``jobs/<id>/`` (always with its trailing slash)."""
    return check_key(str(prefix).rstrip("/")) + "/"


def job_prefix(job_id: str) -> str:
    """``jobs/<job id>/``: every file generated for the job is stored under it."""
    job_id = str(job_id)
    if not _JOB_ID.match(job_id):
        raise StorageError(f"bad job id: {job_id!r}")
    return f"jobs/{job_id}/"


def media_type(name: str) -> str | None:
    """The media type of a stored file, from its name (``None`` when unknown)."""
    return mimetypes.guess_type(name)[0]


@dataclass(frozen=True)
class StoredObject:
    """What a download needs to know about a stored file before sending it."""

    key: str
    size: int
    etag: str | None = None  # unquoted; None: let the local file's own validators be used
    last_modified: datetime | float | None = None


class StagedUpload:
    """An upload written to a local file (``path``) and not stored yet.

    The web app validates ``path`` (probes the video), then calls :meth:`commit`; leaving the ``with`` block
    without committing removes the file, so a refused upload leaves nothing anywhere (on S3: nothing reaches the
    bucket)."""

    def __init__(self, storage: "BaseStorage", key: str, path: Path, sha256: str, size: int):
        self.storage, self.key, self.path, self.sha256, self.size = storage, key, path, sha256, size
        self.committed = False

    def commit(self) -> str:
        """Store the file under :attr:`key` (local: renamed into ``uploads/``; S3: uploaded, multipart when large,
        and the local file removed) → the key."""
        if not self.committed:
            self.storage._commit_upload(self)
            self.committed = True
        return self.key

    def discard(self) -> None:
        if not self.committed:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "StagedUpload":
        return self

    def __exit__(self, *exc) -> None:
        self.discard()


class BaseStorage:
    """The storage interface. Backends implement :meth:`stat`, :meth:`open_read`, :meth:`put_file`,
    :meth:`delete`, :meth:`delete_prefix`, :meth:`_download`, :meth:`_commit_upload` and :meth:`check`;
    the rest is built on those.

    ``spool_dir`` is a local directory for the files the process handles itself: uploads being validated, inputs
    fetched for a stage, outputs before they are stored. The low-disk guard (har/disk.py) checks its volume."""

    kind = "base"
    spool_dir: Path

    # -- keys ------------------------------------------------------------------------------------
    job_prefix = staticmethod(job_prefix)

    def job_key(self, job_id: str, name: str) -> str:
        """The key of a file ``name`` generated for the job: ``jobs/<job id>/<safe name>``."""
        return self.job_prefix(job_id) + safe_filename(name)

    @staticmethod
    def new_upload_key(original_filename: str | None) -> str:
        ext = file_extension(original_filename)
        return f"uploads/{uuid.uuid4().hex}" + (f".{ext}" if ext else "")

    # -- reading -----------------------------------------------------------------------------------
    def stat(self, key: str) -> StoredObject | None:
        """Size and validators of a stored file, or None when nothing is stored under ``key``."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        try:
            return self.stat(key) is not None
        except StorageError:
            return False

    def size(self, key: str) -> int | None:
        info = self.stat(key)
        return None if info is None else info.size

    def open_read(self, key: str, etag: str | None = None) -> BinaryIO:
        """A seekable binary reader of the stored file (raises :class:`NotStored`). S3: nothing is fetched until
        the first read, which fetches from the current position on (a ranged GET); with ``etag`` (from
        :meth:`stat`) every GET is pinned to that version of the object, and a read after the object was replaced
        raises :class:`Changed` instead of returning bytes of another version."""
        raise NotImplementedError

    def read_bytes(self, key: str) -> bytes:
        with self.open_read(key) as f:
            return f.read()

    def local_path(self, key: str) -> Path | None:
        """The local file the key is stored in, where the backend keeps files locally (None: it does not)."""
        return None

    @contextmanager
    def temp_dir(self, job_id: str | None = None) -> Iterator[Path]:
        """A fresh directory under ``spool_dir/work/`` (named after the job and this process), removed with
        everything in it when the block ends, however it ends; what a killed process leaves behind is removed by
        :meth:`remove_stale_temp_dirs` (the workers' sweep)."""
        parent = self.spool_dir / "work"
        parent.mkdir(parents=True, exist_ok=True)
        prefix = f"{safe_filename(str(job_id), 'job', 64) if job_id else 'tmp'}-@{_temp_dir_host()}@p{os.getpid()}-"
        d = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def abort_stale_uploads(self, older_than_s: float) -> list[str]:
        """Abort the unfinished multipart uploads started more than ``older_than_s`` ago (S3: a process that died
        while it uploaded leaves its parts stored, invisible and billed); the keys. Local storage has none."""
        return []

    def remove_stale_temp_dirs(self, min_age_s: float = 60.0) -> list[str]:
        """Remove the temporary directories (:meth:`temp_dir`) of this machine's processes that no longer run (a
        worker killed in the middle of a stage), older than ``min_age_s``; their names. Folders of other machines
        (a spool shared by several) are left to those machines."""
        parent = self.spool_dir / "work"
        removed = []
        try:
            entries = list(parent.iterdir())
        except OSError:
            return removed
        now, host = time.time(), _temp_dir_host()
        for d in entries:
            m = _TEMP_DIR.search(d.name)
            if m is None or m.group(1) != host or not d.is_dir():
                continue
            try:
                if now - d.stat().st_mtime < min_age_s or pid_alive(int(m.group(2))):
                    continue
            except OSError:
                continue
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d.name)
        return removed

    @contextmanager
    def local_copy(self, key: str, job_id: str | None = None) -> Iterator[Path]:
        """The stored file as a local file for the block: the file itself where the backend has one, else a copy
        in a per-job temporary directory, removed when the block ends (also on an error)."""
        path = self.local_path(key)
        if path is not None:
            if not path.is_file():
                raise NotStored(f"nothing is stored under {key!r}")
            yield path
            return
        with self.temp_dir(job_id) as d:
            dest = d / safe_filename(posixpath.basename(check_key(key)), "input")
            self._download(key, dest)
            yield dest

    # -- writing -----------------------------------------------------------------------------------
    def put_file(self, path: str | os.PathLike, key: str, content_type: str | None = None) -> int:
        """Store the local file ``path`` under ``key`` (replacing what was there) → its size."""
        raise NotImplementedError

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> int:
        with self.temp_dir() as d:
            path = d / "data"
            path.write_bytes(data)
            return self.put_file(path, key, content_type)

    @contextmanager
    def job_output(self, job_id: str) -> Iterator[Path]:
        """A local directory to write the job's output files into: when the block ends without an error, each file
        in it (not hidden: a name without a leading dot) is stored under ``jobs/<job id>/<name>``. The directory
        is removed afterwards, however the block ends (the local backend hands out ``jobs/<job id>/`` itself)."""
        with self.temp_dir(job_id) as d:
            yield d
            for p in sorted(d.iterdir()):
                if p.is_file() and not p.name.startswith("."):
                    self.put_file(p, self.job_key(job_id, p.name), media_type(p.name))

    def _stage_dir(self) -> Path:
        return self.spool_dir / "uploads"

    def stage_upload(self, fileobj: BinaryIO, original_filename: str | None,
                     max_bytes: int | None = None) -> StagedUpload:
        """Stream an upload to a local file (1 MiB at a time, hashed on the way) → a :class:`StagedUpload` to
        validate, then commit or discard.

        ``fileobj`` is anything with ``read(n)`` (a werkzeug ``FileStorage`` works too). Nothing is kept when the
        upload fails or exceeds ``max_bytes`` (:class:`UploadTooLarge`)."""
        stream = getattr(fileobj, "stream", fileobj)
        key = self.new_upload_key(original_filename)
        folder = self._stage_dir()
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".part-{posixpath.basename(key)}"  # keeps the extension: some containers are probed by it
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
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return StagedUpload(self, key, tmp, h.hexdigest(), size)

    def save_upload(self, fileobj: BinaryIO, original_filename: str | None,
                    max_bytes: int | None = None) -> tuple[str, str, int]:
        """Stage and store an upload at once → ``(key, sha256, size_bytes)`` (no validation in between)."""
        with self.stage_upload(fileobj, original_filename, max_bytes) as staged:
            return staged.commit(), staged.sha256, staged.size

    def _commit_upload(self, staged: StagedUpload) -> None:
        raise NotImplementedError

    def _download(self, key: str, dest: Path) -> None:
        raise NotImplementedError

    # -- deleting ----------------------------------------------------------------------------------
    def delete(self, key: str) -> bool:
        """Remove a stored file; True when there was one."""
        raise NotImplementedError

    def delete_prefix(self, prefix: str) -> int:
        """Remove every file whose key starts with the folder ``prefix`` (``jobs/<id>/``) → how many."""
        raise NotImplementedError

    def delete_job_files(self, job_id: str, paths: list[str] | tuple[str, ...] = ()) -> list[str]:
        """Remove the given stored files and everything under ``jobs/<job id>/``.

        Best effort: returns the keys (or the job's prefix) that could not be removed (already-missing files are
        not errors)."""
        left: list[str] = []
        for key in paths:
            try:
                self.delete(key)
            except Exception:  # noqa: BLE001 - reported to the caller, who logs it
                left.append(str(key))
        try:
            prefix = self.job_prefix(job_id)
        except StorageError:
            return left
        try:
            self.delete_prefix(prefix)
        except Exception:  # noqa: BLE001
            left.append(prefix)
        return left

    def check(self) -> None:
        """Raise when the storage cannot be used (the root is not a writable directory, the bucket is not there)."""
        raise NotImplementedError
