"""Where uploaded videos and generated files live: one interface, two backends.

* :class:`Storage` — files under one local root directory (the default, ``HAR_STORAGE_DIR``).
* :class:`har.storage_s3.S3Storage` — an S3-compatible bucket (``HAR_STORAGE_URL=s3://bucket/prefix``), so that
  workers on other machines need nothing but the database, Redis and the storage URL.

:func:`open_storage` picks the backend from the settings. A stored file is named by its *key*, a relative POSIX
path (``uploads/<hex>.<ext>``, ``jobs/<job id>/<name>``); the database stores keys, so its rows mean the same on
either backend (a local file is ``<root>/<key>``, an object ``<prefix>/<key>``) and the root can move (or be a
shared volume mounted elsewhere in another container).

What the parts use (:class:`BaseStorage`):

- the web app: :meth:`~BaseStorage.stage_upload` (the upload as a local file to validate, stored only by
  :meth:`StagedUpload.commit`), :meth:`~BaseStorage.exists`, :meth:`~BaseStorage.stat` /
  :meth:`~BaseStorage.open_read` / :meth:`~BaseStorage.local_path` (downloads, ``web/downloads.py``),
  :meth:`~BaseStorage.delete_job_files`;
- the workers: :meth:`~BaseStorage.local_copy` (an input as a local file, in a per-job temporary directory removed
  afterwards, also on failure), :meth:`~BaseStorage.job_output` (a local directory whose files are stored under
  ``jobs/<job id>/`` when the block ends), :meth:`~BaseStorage.delete`, :meth:`~BaseStorage.delete_job_files`.

The local backend keeps everything where it always was: uploads are staged in ``uploads/`` and renamed into place,
inputs are read where they lie and outputs written straight into ``jobs/<job id>/``; nothing is copied.
"""
from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator
from urllib.parse import unquote, urlparse

from har.storage_base import (  # noqa: F401 (the storage interface and its helpers, re-exported)
    CHUNK,
    BaseStorage,
    Changed,
    NotStored,
    StagedUpload,
    StorageError,
    StoredObject,
    UploadTooLarge,
    check_key,
    check_prefix,
    file_extension,
    job_prefix,
    media_type,
    safe_filename,
)
from models.hashing import sha256_file  # noqa: F401 (re-exported)


class Storage(BaseStorage):
    """Local files under one root: ``uploads/`` for videos, ``jobs/<job id>/`` for generated files."""

    kind = "local"

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.spool_dir = self.root

    def __repr__(self) -> str:
        return f"Storage({str(self.root)!r})"

    @property
    def url(self) -> str:
        return self.root.as_uri()

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

    def local_path(self, key: str) -> Path:
        return self.path(key)

    def stat(self, key: str) -> StoredObject | None:
        p = self.path(key)
        try:
            st = p.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not p.is_file():
            return None
        return StoredObject(key=str(key), size=st.st_size, etag=None, last_modified=st.st_mtime)

    def open_read(self, key: str, etag: str | None = None) -> BinaryIO:
        # a local file is replaced by renaming a new one into place: an open reader keeps reading the old one
        try:
            return open(self.path(key), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotStored(f"nothing is stored under {key!r}") from None

    def job_dir(self, job_id: str, create: bool = True) -> Path:
        """``<root>/jobs/<job id>/`` (created unless ``create=False``)."""
        d = self.root / self.job_prefix(job_id)
        if create:
            d.mkdir(parents=True, exist_ok=True)
        return d

    def job_path(self, job_id: str, name: str) -> tuple[Path, str]:
        """(absolute path, relative path) of a file ``name`` in the job's directory."""
        p = self.job_dir(job_id) / safe_filename(name)
        return p, self.relative(p)

    # -- writing -----------------------------------------------------------------------------
    def _write_atomic(self, key: str, write) -> int:
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        try:
            write(tmp)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return dest.stat().st_size

    def put_file(self, path: str | os.PathLike, key: str, content_type: str | None = None) -> int:
        src = Path(path)
        if src.resolve() == self.path(key):
            return src.stat().st_size
        return self._write_atomic(key, lambda tmp: shutil.copyfile(src, tmp))

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> int:
        return self._write_atomic(key, lambda tmp: tmp.write_bytes(data))

    @contextmanager
    def job_output(self, job_id: str) -> Iterator[Path]:
        yield self.job_dir(job_id)  # written in place: already stored

    def _stage_dir(self) -> Path:
        return self.root / "uploads"

    def _commit_upload(self, staged: StagedUpload) -> None:
        os.replace(staged.path, self.path(staged.key))

    def _download(self, key: str, dest: Path) -> None:
        with self.open_read(key) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK)

    # -- deleting ----------------------------------------------------------------------------
    def delete(self, rel: str) -> bool:
        try:
            p = self.path(rel)
        except StorageError:
            return False
        if p.is_file():
            p.unlink()
            return True
        return False

    def delete_prefix(self, prefix: str) -> int:
        d = self.path(check_prefix(prefix).rstrip("/"))
        if not d.is_dir():
            return 0
        n = sum(1 for p in d.rglob("*") if p.is_file())
        shutil.rmtree(d)
        return n

    def check(self) -> None:
        """Raise unless the root is a directory this process can create files in (a probe file, removed)."""
        self.root.mkdir(parents=True, exist_ok=True)
        probe = self.root / f".check-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)


LocalStorage = Storage


def open_storage(settings) -> BaseStorage:
    """The storage the settings name: ``HAR_STORAGE_URL`` ``s3://bucket/prefix`` (S3-compatible, endpoint from
    ``HAR_S3_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL``, credentials and region from the standard AWS variables), or
    empty (or ``file:///path``) for local files in ``HAR_STORAGE_DIR``. With S3, ``HAR_STORAGE_DIR`` is the local
    spool: uploads being validated and the files a worker handles, in temporary directories."""
    url = (getattr(settings, "storage_url", "") or "").strip()
    if not url:
        return Storage(settings.resolved_storage_dir)
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Storage(unquote(parsed.path))
    if parsed.scheme == "s3":
        from har.storage_s3 import S3Storage

        endpoint = (getattr(settings, "s3_endpoint_url", "") or os.environ.get("AWS_ENDPOINT_URL_S3")
                    or os.environ.get("AWS_ENDPOINT_URL") or None)
        return S3Storage.from_url(url, endpoint_url=endpoint, spool_dir=settings.resolved_storage_dir)
    raise StorageError(f"unsupported storage URL {url!r}: use s3://bucket/prefix, or leave it empty for local files")
