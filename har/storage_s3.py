"""S3-compatible object storage (AWS S3, MinIO, Ceph, …) behind :class:`har.storage.BaseStorage`.

Chosen with ``HAR_STORAGE_URL=s3://bucket/prefix``; the endpoint comes from ``HAR_S3_ENDPOINT_URL`` (or the
standard ``AWS_ENDPOINT_URL``; none: AWS itself), credentials and region from the standard AWS variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, or a profile).

An object's name is ``<prefix>/<key>``. Uploads and stage outputs go up with boto3's managed transfer (multipart
above 8 MiB, from a local file that is removed afterwards); inputs come down into a per-job temporary directory
under the spool (``HAR_STORAGE_DIR``); downloads are streamed with ranged GETs (:class:`S3Reader`).
"""
from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

from har.storage_base import (
    BaseStorage,
    Changed,
    NotStored,
    StagedUpload,
    StorageError,
    StoredObject,
    check_key,
    check_prefix,
    media_type,
)

_clients: dict[tuple, object] = {}
_clients_lock = threading.Lock()


def _after_fork_in_child() -> None:
    """A forked process (a Celery pool child) starts with a lock no thread of its own holds and no clients."""
    global _clients_lock
    _clients_lock = threading.Lock()
    _clients.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
_MISSING = {"404", "NoSuchKey", "NotFound"}


def client_for(endpoint_url: str | None = None, quick: bool = False):
    """A boto3 S3 client for the endpoint, one per process (clients are thread-safe, not fork-safe). ``quick``: one
    that gives up within seconds (no retries), for health checks."""
    key = (os.getpid(), endpoint_url or "", quick)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            import boto3
            from botocore.config import Config

            options = dict(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=60,
                           max_pool_connections=20,
                           # plain payloads: S3-compatible servers do not all know the newer default checksums
                           request_checksum_calculation="when_required",
                           response_checksum_validation="when_required")
            if quick:
                options.update(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2, read_timeout=5)
            if endpoint_url:  # a self-hosted server (MinIO): bucket names in the path, not in the host name
                options["s3"] = {"addressing_style": "path"}
            client = boto3.session.Session().client("s3", endpoint_url=endpoint_url or None, config=Config(**options))
            _clients[key] = client
    return client


def _code(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def is_missing(exc: BaseException) -> bool:
    """Whether a botocore error says the object (or bucket) is not there."""
    return _code(exc) in _MISSING


def transient_errors() -> tuple[type[BaseException], ...]:
    """The storage service unreachable right now (worth retrying): botocore's connection errors and timeouts, and
    what boto3's transfers raise once their own retries of those ran out."""
    from boto3.exceptions import RetriesExceededError, S3UploadFailedError
    from botocore.exceptions import ConnectionError, HTTPClientError, ReadTimeoutError

    return (ConnectionError, HTTPClientError, ReadTimeoutError, RetriesExceededError, S3UploadFailedError)


_BUSY = {"SlowDown", "RequestTimeout", "ServiceUnavailable", "InternalError", "503", "500"}


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` says the storage service is unreachable or overloaded right now (see transient_errors),
    including an answer 5xx / SlowDown / RequestTimeout."""
    if isinstance(exc, transient_errors()):
        return True
    return _code(exc) in _BUSY


class S3Storage(BaseStorage):
    kind = "s3"

    def __init__(self, bucket: str, prefix: str = "", *, spool_dir: str | os.PathLike,
                 endpoint_url: str | None = None, client=None):
        if not bucket:
            raise StorageError("an S3 storage URL needs a bucket: s3://bucket/prefix")
        self.bucket = bucket
        prefix = prefix.strip("/")
        self.prefix = check_prefix(prefix) if prefix else ""
        self.endpoint_url = endpoint_url or None
        self.spool_dir = Path(spool_dir).expanduser().resolve()
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._client = client

    @classmethod
    def from_url(cls, url: str, *, spool_dir, endpoint_url: str | None = None) -> "S3Storage":
        parsed = urlparse(url)
        if parsed.scheme != "s3":
            raise StorageError(f"not an s3:// URL: {url!r}")
        return cls(parsed.netloc, parsed.path, spool_dir=spool_dir, endpoint_url=endpoint_url)

    @property
    def client(self):
        return self._client or client_for(self.endpoint_url)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def __repr__(self) -> str:
        return f"S3Storage({self.url!r}, endpoint_url={self.endpoint_url!r})"

    def name(self, key: str) -> str:
        """The object name of a key (``<prefix><key>``)."""
        return self.prefix + check_key(key)

    # -- reading -----------------------------------------------------------------------------------
    def stat(self, key: str) -> StoredObject | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.name(key))
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise
        etag = (head.get("ETag") or "").strip('"') or None
        return StoredObject(key=key, size=int(head["ContentLength"]), etag=etag,
                            last_modified=head.get("LastModified"))

    def open_read(self, key: str, etag: str | None = None) -> BinaryIO:
        return S3Reader(self.client, self.bucket, self.name(key), etag=etag)

    def _download(self, key: str, dest: Path) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.download_file(self.bucket, self.name(key), str(dest))
        except ClientError as exc:
            dest.unlink(missing_ok=True)
            if is_missing(exc):
                raise NotStored(f"nothing is stored under {key!r}") from None
            raise

    # -- writing -----------------------------------------------------------------------------------
    def put_file(self, path: str | os.PathLike, key: str, content_type: str | None = None) -> int:
        name = self.name(key)
        extra = {"ContentType": content_type or media_type(key) or "application/octet-stream"}
        self.client.upload_file(str(path), self.bucket, name, ExtraArgs=extra)  # multipart above 8 MiB
        return os.path.getsize(path)

    def abort_stale_uploads(self, older_than_s: float) -> list[str]:
        from datetime import datetime, timedelta, timezone

        cutoff = datetime.now(timezone.utc) - timedelta(seconds=float(older_than_s))
        aborted = []
        args = {"Bucket": self.bucket, "Prefix": self.prefix}
        while True:
            page = self.client.list_multipart_uploads(**args)
            for up in page.get("Uploads") or []:
                started = up.get("Initiated")
                if started is not None and started.tzinfo is None:
                    started = started.replace(tzinfo=timezone.utc)
                if started is None or started > cutoff:
                    continue
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"])
                aborted.append(up["Key"][len(self.prefix):])
            if not page.get("IsTruncated"):
                return aborted
            args.update(KeyMarker=page.get("NextKeyMarker", ""), UploadIdMarker=page.get("NextUploadIdMarker", ""))

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> int:
        self.client.put_object(Bucket=self.bucket, Key=self.name(key), Body=data,
                               ContentType=content_type or media_type(key) or "application/octet-stream")
        return len(data)

    def _commit_upload(self, staged: StagedUpload) -> None:
        self.put_file(staged.path, staged.key)
        staged.path.unlink(missing_ok=True)

    # -- deleting ----------------------------------------------------------------------------------
    def delete(self, key: str) -> bool:
        try:
            name = self.name(key)
        except StorageError:
            return False
        if self.stat(key) is None:
            return False
        self.client.delete_object(Bucket=self.bucket, Key=name)
        return True

    def delete_prefix(self, prefix: str) -> int:
        name = self.prefix + check_prefix(prefix)
        n = 0
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=name):
            objects = [{"Key": o["Key"]} for o in page.get("Contents") or ()]
            if not objects:
                continue
            resp = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
            errors = resp.get("Errors") or []
            if errors:
                raise StorageError(f"could not delete {len(errors)} object(s) under {name!r}: "
                                   f"{errors[0].get('Code')} {errors[0].get('Message')}")
            n += len(objects)
        return n

    def check(self) -> None:
        """Raises unless the bucket answers (within seconds: for readiness checks)."""
        client = self._client if self._client is not None else client_for(self.endpoint_url, quick=True)
        client.head_bucket(Bucket=self.bucket)


class S3Reader(io.RawIOBase):
    """A seekable reader of one object. Nothing is fetched until the first read; a read fetches from the current
    position to :meth:`limit` (or the end) with one ranged GET, streamed; a seek elsewhere starts another. With
    ``etag`` every request carries ``If-Match``: once the object is replaced (a re-rendered video, new reports), the
    next request fails with :class:`~har.storage_base.Changed`, so one reader never mixes two versions' bytes."""

    def __init__(self, client, bucket: str, name: str, etag: str | None = None):
        super().__init__()
        self._client, self._bucket, self._name = client, bucket, name
        self._etag = etag
        self._pos = 0
        self._end: int | None = None  # exclusive
        self._size: int | None = None
        self._body = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def _length(self) -> int:
        if self._size is None:
            from botocore.exceptions import ClientError

            try:
                head = self._client.head_object(**self._args())
            except ClientError as exc:
                self._raise(exc)
            self._size = int(head["ContentLength"])
        return self._size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._length() + offset
        else:
            raise ValueError(f"bad whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        if pos != self._pos:
            self._close_body()
            self._pos = pos
        return pos

    def limit(self, end: int | None) -> None:
        """Read no further than byte ``end`` (exclusive): the GET asks for just that range."""
        if end != self._end:
            self._close_body()
            self._end = end

    def _open(self) -> None:
        from botocore.exceptions import ClientError

        args = self._args()
        if self._pos or self._end is not None:
            args["Range"] = f"bytes={self._pos}-" + ("" if self._end is None else str(self._end - 1))
        try:
            resp = self._client.get_object(**args)
        except ClientError as exc:
            if _code(exc) == "InvalidRange":  # at or past the end
                self._body = io.BytesIO(b"")
                return
            self._raise(exc)
        self._body = resp["Body"]
        if self._size is None and "ContentRange" not in resp:
            self._size = int(resp.get("ContentLength") or 0)

    def _args(self) -> dict:
        args = {"Bucket": self._bucket, "Key": self._name}
        if self._etag:
            args["IfMatch"] = f'"{self._etag}"'
        return args

    def _raise(self, exc: BaseException):
        if _code(exc) in ("PreconditionFailed", "412"):
            raise Changed(f"{self._name!r} was replaced while it was being read") from None
        if is_missing(exc):
            raise NotStored(f"{self._name!r} is not stored") from None
        raise exc

    def readinto(self, b) -> int:
        want = len(b)
        if self._end is not None:
            want = min(want, self._end - self._pos)
        if want <= 0:
            return 0
        if self._body is None:
            self._open()
        data = self._body.read(want)
        n = len(data)
        b[:n] = data
        self._pos += n
        return n

    def _close_body(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            try:
                body.close()
            except Exception:  # noqa: BLE001 - closing a half-read stream
                pass

    def close(self) -> None:
        self._close_body()
        super().close()
