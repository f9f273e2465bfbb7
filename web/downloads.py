"""Sending stored files (reports, annotated videos) with HTTP range requests, from either storage backend.

Local storage: ``send_file`` on the file itself, as always (conditional: ETag, Last-Modified, ``Range``).
S3 storage: proxied through the web app, not redirected to a presigned URL, so the browser only ever talks to the
web origin (no bucket host in the page's CSP, no URLs that outlive a deleted job). The response is built the same
way (werkzeug evaluates ``Range``, ``If-Range``, ``If-None-Match``, ``If-Modified-Since`` against the object's size,
ETag and Last-Modified from one HEAD request), and the body is streamed from a GET of exactly the requested byte
range: a ``<video>`` seeking in a large file fetches only what it plays.
"""
from __future__ import annotations

import logging

from flask import current_app, request, send_file
from werkzeug.exceptions import RequestedRangeNotSatisfiable, ServiceUnavailable
from werkzeug.utils import send_file as werkzeug_send_file

from har.storage import StorageError

log = logging.getLogger(__name__)


def send_stored(storage, key: str, *, mimetype: str, download_name: str, as_attachment: bool = False,
                max_age: int | None = 0):
    """The response for the stored file ``key``, or None when nothing is stored under it."""
    try:
        path = storage.local_path(key)
        info = None if path is not None else storage.stat(key)
    except StorageError:  # a key that names nothing storable
        return None
    except Exception as exc:  # the object storage cannot be reached, or refuses
        log.warning("cannot read %r from the storage: %s", key, exc)
        raise ServiceUnavailable("The file storage cannot be reached right now; try again in a moment.") from exc
    if path is not None:
        if not path.is_file():
            return None
        return send_file(path, mimetype=mimetype, as_attachment=as_attachment, download_name=download_name,
                         conditional=True, max_age=max_age)
    if info is None:
        return None
    # fetches nothing until the body is sent; pinned to the version whose size and ETag the headers state (an object
    # replaced meanwhile, e.g. a re-rendered video, cuts the body short rather than mixing two versions' bytes)
    reader = storage.open_read(key, etag=info.etag)
    # werkzeug's own file wrapper, not the server's (gunicorn's cannot seek: a range would be read, and fetched,
    # from the object's first byte and the bytes before it thrown away)
    environ = {k: v for k, v in request.environ.items() if k != "wsgi.file_wrapper"}
    rv = werkzeug_send_file(reader, environ, mimetype=mimetype, as_attachment=as_attachment,
                            download_name=download_name, conditional=False, etag=info.etag or False,
                            last_modified=info.last_modified, max_age=max_age,
                            response_class=current_app.response_class, _root_path=current_app.root_path)
    rv.content_length = info.size
    try:
        rv = rv.make_conditional(request.environ, accept_ranges=True, complete_length=info.size)
    except RequestedRangeNotSatisfiable:
        reader.close()
        raise
    if rv.status_code == 206 and rv.content_range is not None:
        reader.limit(rv.content_range.stop)  # the GET asks for the range only; werkzeug seeks to its start
    elif rv.status_code not in (200, 206):  # 304 / 412: no body
        reader.close()
    return rv
