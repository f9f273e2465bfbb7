"""Command-line client for the HAR REST API (standard library only).

Usage::

    python -m har.client [--url URL] [--token TOKEN] [--quiet] COMMAND ...

    submit VIDEO [--fps F] [--imgsz N] [--stride N] [--callback-url URL] [--wait] [--out REPORT.json] [--timeout S]
        Upload VIDEO (streamed from disk, with an upload progress bar) and start a job. Prints the job id
        (first line of stdout, alone, for scripts) and the job's page URL. --wait follows the job with a
        progress bar until it is done or failed, then prints its result; --out writes the JSON report
        there once the job is done (and implies --wait). --callback-url: the job's webhook (README: Webhooks);
        without a token the job's own key (it signs the webhooks) is printed on stderr.
    submit VIDEO|FOLDER ... [--recursive] [--jobs N] [--wait] [--summary FILE.csv|FILE.json] [...]
        Several files, or the videos in folders (--recursive: in their subfolders too): up to N uploads at
        once (default 2), one progress line per file on stderr, then a table on stdout (file, job id, state,
        main action). --wait follows every job until it is done or failed before the table; --summary writes
        every file's outcome and result there too (CSV or JSON, from its extension; - for JSON on stdout).
    status JOB_ID [--json] [--wait] [--timeout S]
        The job's state and progress; once done, every person's overall action. --json prints the API's
        JSON as it is. --wait follows the job until it is done or failed first.
    download JOB_ID --format {csv,json,html,video} [--out PATH] [--wait] [--timeout S]
        Stream a report or the annotated video to PATH (a file, or a folder for the default name; default:
        JOB_ID.csv / .json / .html / .mp4 or .webm in the current folder; ``-`` for stdout). A report exists once the job is done; the
        annotated video is rendered after that. Without --wait, "not ready yet" is exit code 6;
        with --wait the client follows the job (and the video) until it is ready.

The server is ``--url`` or ``$HAR_URL`` (default http://127.0.0.1:8000). ``--token`` or ``$HAR_TOKEN``, when
given, is sent as ``Authorization: Bearer TOKEN`` with every request. ``--timeout`` bounds the waiting (not
the upload), in seconds; the default is to wait as long as it takes. Progress goes to stderr: a bar
redrawn in place when stderr is a terminal, otherwise a line now and then (on every change of stage);
``--quiet`` turns it off. Requests go straight to the server (HTTP proxies are not used).

Exit codes:

    0    success
    1    the job failed, or its annotated video could not be rendered (the reason is printed);
         ``status`` also exits 1 for a failed job
    2    usage error: bad arguments, a video that cannot be read, an output file that cannot be written
    3    the server cannot be reached, answered with an HTTP 5xx error, or sent something unexpected
    4    the server refused the request (HTTP 4xx): an upload it does not accept (415 type, 413 size,
         422 unreadable or too long, 400 bad setting), an unknown job id, a token it does not accept or
         needs (401), too many uploads (429: the message says when to try again), ...; its message is printed
    5    timed out waiting (--timeout); the job goes on on the server
    6    not ready yet (without --wait): the job is not done, or its annotated video is still rendering
    130  interrupted (Ctrl-C); a submitted job goes on on the server

Several files: 0 when every file was submitted (and, with --wait, every job is done); otherwise the code of the
first file in the table that was not (3 or 4 for an upload that failed, 1 for a failed job, 5 for a timeout).

Installed (``pip install ./`` from the repository: this file and nothing else is needed) it is the ``har`` command.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import csv
import http.client
import io
import json
import os
import re
import secrets
import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import quote, urljoin, urlsplit

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_REFUSED = 4
EXIT_TIMEOUT = 5
EXIT_NOT_READY = 6
EXIT_INTERRUPTED = 130

DEFAULT_URL = "http://127.0.0.1:8000"
REQUEST_TIMEOUT_S = 60.0  # one socket operation (connect, send, receive), not a whole transfer
POLL_INTERVAL_S = 1.0
CHUNK = 256 * 1024
FORMATS = ("csv", "json", "html", "video")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm")  # what a folder is searched for (the server's default)
DEFAULT_JOBS = 2
USER_AGENT = "har-client/1.0"


class ClientError(Exception):
    """Ends the command with ``code`` and ``message`` on stderr."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class ApiError(ClientError):
    """An HTTP error answer: status, the server's error code and message, and its JSON body (if any)."""

    def __init__(self, status: int, error: str, message: str, body: dict | None = None):
        code = EXIT_UNREACHABLE if status >= 500 else EXIT_REFUSED
        super().__init__(code, f"{message} (HTTP {status}{', ' + error if error else ''})")
        self.status, self.error, self.server_message, self.body = status, error, message, body or {}


# ------------------------------------------------------------------------------------------ progress
def _is_terminal(stream) -> bool:
    """Whether ``stream`` is a terminal (progress is then redrawn in place)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """Progress on stderr: a bar redrawn in place on a terminal, else an occasional plain line."""

    LINE_EVERY_S = 10.0  # without a terminal: at most one line this often, except when the stage changes

    def __init__(self, enabled: bool = True, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = _is_terminal(self.stream)
        self._drawn = 0  # characters of the bar now on the line (terminal)
        self._last_draw = 0.0
        self._last_key: Any = None
        self._last_line = 0.0

    def update(self, fraction: float | None, text: str, key: Any = None, force: bool = False) -> None:
        """Show ``fraction`` (0-1, or None when unknown) and ``text``; ``key`` changing (e.g. the stage)
        always shows a line, even without a terminal."""
        if not self.enabled:
            return
        now = time.monotonic()
        pct = "" if fraction is None else f"{max(0.0, min(1.0, fraction)) * 100:5.1f} %"
        if self.tty:
            if not force and key == self._last_key and now - self._last_draw < 0.1:
                return
            width = shutil.get_terminal_size((80, 24)).columns
            bar_w = 24
            filled = 0 if fraction is None else int(round(max(0.0, min(1.0, fraction)) * bar_w))
            line = f"[{'#' * filled}{'-' * (bar_w - filled)}] {pct:>7} {text}"[: max(10, width - 1)]
            self.stream.write("\r" + line + " " * max(0, self._drawn - len(line)))
            self.stream.flush()
            self._drawn = len(line)
            self._last_draw = now
        elif force or key != self._last_key or now - self._last_line >= self.LINE_EVERY_S:
            self.stream.write(f"{pct.strip() + ' ' if pct else ''}{text}\n")
            self.stream.flush()
            self._last_line = now
        self._last_key = key

    def message(self, text: str) -> None:
        """A line of its own (the bar, if any, is ended first)."""
        if not self.enabled:
            return
        self.finish()
        self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """End the bar's line (terminal); the next update starts a new one."""
        if self.enabled and self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
        self._drawn = 0
        self._last_key = None


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover


def job_progress_text(job: dict) -> tuple[float | None, str, Any]:
    """(fraction, text, key) for the progress bar from the job JSON (GET /api/jobs/<id>)."""
    status = job.get("status") or "?"
    stage = job.get("stage") or ""
    prog = job.get("progress") or {}
    fraction = prog.get("fraction")
    # "extracting poses" says what "extracting" does; "queued: waiting for a worker" needs both
    parts = [stage if stage and status in stage else f"{status}: {stage}" if stage else status]
    done, total = prog.get("frames_done") or 0, prog.get("frames_total") or 0
    if total and status not in ("done", "failed"):
        parts.append(f"{done}/{total} frames")
    eta = prog.get("eta_s")
    if eta is not None:
        parts.append(f"ETA {eta:.0f} s")
    video = (job.get("annotated_video") or {}).get("status")
    if status == "done" and video == "rendering":
        parts = ["done: rendering the annotated video"]
        fraction = None
    return fraction, ", ".join(parts), (status, stage if status != "extracting" else None)


# ------------------------------------------------------------------------------------------ HTTP
class Api:
    """The HAR REST API at ``base_url`` (http or https, optionally under a path prefix)."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = REQUEST_TIMEOUT_S):
        parts = urlsplit(base_url if "://" in base_url else "http://" + base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ClientError(EXIT_USAGE, f"invalid server URL {base_url!r}: use http://HOST[:PORT]")
        self.base_url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self.scheme, self.host, self.prefix = parts.scheme, parts.hostname, parts.path.rstrip("/")
        try:
            self.port = parts.port
        except ValueError:
            raise ClientError(EXIT_USAGE, f"invalid port in server URL {base_url!r}") from None
        self.token = token or None
        self.timeout = timeout

    def absolute(self, path: str | None) -> str | None:
        """An absolute URL for a path the server returned (``/jobs/<id>``)."""
        return urljoin(self.base_url + "/", path) if path else None

    def job_path(self, job_id: str, suffix: str = "") -> str:
        return f"/api/jobs/{quote(job_id, safe='')}{suffix}"

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=self.timeout)

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    def _unreachable(self, exc: BaseException) -> ClientError:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, socket.timeout):
            reason = f"no answer within {self.timeout:g} s"
        return ClientError(EXIT_UNREACHABLE, f"cannot reach the HAR server at {self.base_url}: {reason}")

    def send(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             accept_statuses: tuple[int, ...] = (200,)) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send a request; returns the open connection and response (the caller reads and closes it) when
        its status is one of ``accept_statuses``, else raises :class:`ApiError` (or :class:`ClientError`
        when the server cannot be reached)."""
        conn = self._connection()
        try:
            try:
                conn.request(method, self.prefix + path, body=body, headers=self._headers(headers))
            except (BrokenPipeError, ConnectionResetError):
                # the server answered (e.g. 413) and closed before taking the whole body: read that answer
                pass
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise self._unreachable(exc) from None
        except BaseException:  # e.g. the file to upload changed, or Ctrl-C
            conn.close()
            raise
        if resp.status in accept_statuses:
            return conn, resp
        try:
            raise self._error(resp)
        finally:
            conn.close()

    def _error(self, resp: http.client.HTTPResponse) -> ClientError:
        try:
            raw = resp.read(64 * 1024)
        except (OSError, http.client.HTTPException):
            raw = b""
        body = None
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            pass
        if isinstance(body, dict) and "message" in body:
            return ApiError(resp.status, str(body.get("error") or ""), str(body["message"]), body)
        if 300 <= resp.status < 400:
            where = resp.getheader("Location") or "elsewhere"
            return ClientError(EXIT_UNREACHABLE, f"the server redirects to {where} (HTTP {resp.status}); "
                                                 "check --url / HAR_URL")
        # not the API's JSON: a proxy's error page, or --url is not the HAR service
        ctype = (resp.getheader("Content-Type") or "").lower()
        text = "" if "html" in ctype else re.sub(r"\s+", " ", raw.decode("utf-8", "replace")).strip()[:300]
        message = f"{resp.reason or 'error'}{': ' + text if text else ''} from {self.base_url}"
        if resp.status < 500:
            message += " (not an answer of the HAR API: check --url / HAR_URL)"
        return ApiError(resp.status, "", message, None)

    def get_json(self, path: str) -> dict:
        conn, resp = self.send("GET", path)
        try:
            return self._read_json(resp)
        finally:
            conn.close()

    def _read_json(self, resp: http.client.HTTPResponse) -> dict:
        try:
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from None
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ClientError(EXIT_UNREACHABLE, f"the server at {self.base_url} did not answer with JSON "
                                                "(is --url / HAR_URL the HAR service?)") from None
        if not isinstance(doc, dict):
            raise ClientError(EXIT_UNREACHABLE, "unexpected JSON from the server (not an object)")
        return doc

    def job(self, job_id: str) -> dict:
        return self.get_json(self.job_path(job_id))

    # upload ------------------------------------------------------------------------------------
    def upload(self, path: Path, fields: dict[str, str], progress: Progress) -> dict:
        """``POST /api/jobs`` as multipart/form-data, streaming the file from disk; returns the 202 body."""
        boundary = "har-client-" + secrets.token_hex(16)
        head = b""
        for name, value in fields.items():
            head += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                     ).encode("utf-8")
        filename = path.name.replace("\\", "%5C").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
        head += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"video\"; filename=\"{filename}\"\r\n"
                 f"Content-Type: application/octet-stream\r\n\r\n").encode("utf-8")
        tail = f"\r\n--{boundary}--\r\n".encode("ascii")
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ClientError(EXIT_USAGE, f"cannot read {path}: {exc.strerror or exc}") from None
        label = f"uploading {path.name}"

        def body() -> Iterator[bytes]:
            yield head
            sent = 0
            progress.update(0.0 if size else 1.0, f"{label}: 0 B / {_bytes(size)}", key="upload", force=True)
            with open(path, "rb") as f:
                while sent < size:
                    chunk = f.read(min(CHUNK, size - sent))
                    if not chunk:
                        raise ClientError(EXIT_USAGE, f"{path} became shorter while it was being uploaded")
                    sent += len(chunk)
                    yield chunk
                    progress.update(sent / size, f"{label}: {_bytes(sent)} / {_bytes(size)}", key="upload",
                                    force=sent == size)
            yield tail

        try:
            f = open(path, "rb")  # fail early, before connecting, when the file cannot be read
            f.close()
        except OSError as exc:
            raise ClientError(EXIT_USAGE, f"cannot read {path}: {exc.strerror or exc}") from None
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}",
                   "Content-Length": str(len(head) + size + len(tail))}
        try:
            conn, resp = self.send("POST", "/api/jobs", body=body(), headers=headers, accept_statuses=(202,))
        finally:
            progress.finish()
        try:
            return self._read_json(resp)
        finally:
            conn.close()

    # download ------------------------------------------------------------------------------------
    def download(self, path: str, out: str | Callable[[http.client.HTTPResponse], str], progress: Progress,
                 label: str) -> tuple[str, int]:
        """Stream ``GET path`` to the file ``out`` (``-``: stdout; a callable: picks the name from the response),
        written under a temporary name and renamed when complete. Returns (file name, bytes)."""
        conn, resp = self.send("GET", path)
        try:
            target = out(resp) if callable(out) else out
            total = int(resp.getheader("Content-Length") or 0) or None
            if target == "-":
                return target, self._copy(resp, sys.stdout.buffer, total, progress, label)
            dest = Path(target)
            tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")
            try:
                with open(tmp, "wb") as f:
                    n = self._copy(resp, f, total, progress, label)
                os.replace(tmp, dest)
            except OSError as exc:
                if isinstance(exc, (ConnectionError, socket.timeout)):
                    raise self._unreachable(exc) from None
                raise ClientError(EXIT_USAGE, f"cannot write {dest}: {exc.strerror or exc}") from None
            finally:
                if tmp.exists():
                    tmp.unlink()
            return str(dest), n
        finally:
            progress.finish()
            conn.close()

    def _copy(self, resp: http.client.HTTPResponse, f, total: int | None, progress: Progress, label: str) -> int:
        n = 0
        while True:
            try:
                chunk = resp.read(CHUNK)
            except (OSError, http.client.HTTPException) as exc:
                raise self._unreachable(exc) from None
            if not chunk:
                break
            f.write(chunk)
            n += len(chunk)
            progress.update(n / total if total else None,
                            f"{label}: {_bytes(n)}{' / ' + _bytes(total) if total else ''}", key="download")
        if total is not None and n != total:
            raise ClientError(EXIT_UNREACHABLE, f"the download ended early ({n} of {total} bytes)")
        f.flush()
        return n


# ------------------------------------------------------------------------------------------ waiting
def wait_for_job(api: Api, job_id: str, until: Callable[[dict], bool], progress: Progress,
                 timeout: float | None, what: str) -> dict:
    """Poll the job until ``until(job)``; shows its progress. Raises exit 5 after ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    errors = 0
    try:
        while True:
            try:
                job = api.job(job_id)
                errors = 0
            except ClientError as exc:
                # a restarting server or a passing network problem: try again a few times
                if exc.code != EXIT_UNREACHABLE or errors >= 3:
                    raise
                errors += 1
                job = None
            if job is not None:
                fraction, text, key = job_progress_text(job)
                if until(job):
                    if job.get("status") == "done":
                        fraction, text = 1.0, "done" if "rendering" not in text else text
                    progress.update(fraction, text, key=("end", key), force=True)
                    return job
                progress.update(fraction, text, key=key)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                state = (job or {}).get("status", "unknown")
                raise ClientError(EXIT_TIMEOUT, f"timed out after {timeout:g} s waiting for {what} (job {job_id} "
                                                f"is {state}); it goes on on the server: "
                                                f"python -m har.client status {job_id} --wait")
            time.sleep(POLL_INTERVAL_S if left is None else max(0.0, min(POLL_INTERVAL_S, left)))
    finally:
        progress.finish()


def is_final(job: dict) -> bool:
    return job.get("status") in ("done", "failed")


def video_settled(job: dict) -> bool:
    """The job is failed, or done with its annotated video no longer rendering."""
    return job.get("status") == "failed" or (
        job.get("status") == "done" and (job.get("annotated_video") or {}).get("status") != "rendering")


def job_failed(job: dict) -> ClientError:
    return ClientError(EXIT_JOB_FAILED, f"job {job.get('id')} failed: {job.get('error') or 'no reason was recorded'}")


# ------------------------------------------------------------------------------------------ output
def _secs(value: Any) -> str:
    return "?" if value is None else f"{float(value):.2f}"


def _pct(value: Any) -> str:
    return "–" if value is None else f"{float(value) * 100:.0f} %"


def describe_job(job: dict, api: Api) -> list[str]:
    """Human-readable lines about a job: state, progress, and once done every person's overall action."""
    status = job.get("status") or "?"
    lines = [f"Job:       {job.get('id')}"]
    stage = job.get("stage")
    lines.append(f"State:     {status}" + (f" ({stage})" if stage and stage != status else ""))
    prog = job.get("progress") or {}
    if status not in ("done", "failed"):
        bits = [_pct(prog.get("fraction"))]
        if prog.get("frames_total"):
            bits.append(f"{prog.get('frames_done') or 0}/{prog['frames_total']} frames")
        if prog.get("eta_s") is not None:
            bits.append(f"ETA {prog['eta_s']:.0f} s")
        lines.append("Progress:  " + ", ".join(bits))
    video = job.get("video") or {}
    if video:
        lines.append(f"Video:     {video.get('original_filename')} ({_secs(video.get('duration_s'))} s, "
                     f"{video.get('width')}x{video.get('height')})")
    page = ((job.get("links") or {}).get("page"))
    if page:
        lines.append(f"Page:      {api.absolute(page)}")
    if status == "failed":
        lines.append(f"Reason:    {job.get('error') or 'no reason was recorded'}")
    if status == "done":
        result = job.get("result") or {}
        persons = result.get("persons") or []
        outcome = result.get("status")
        if outcome == "no_person":
            lines.append("Result:    nobody was tracked in the video")
        elif outcome == "too_short" or not persons:
            n = len(result.get("short_tracks") or [])
            lines.append(f"Result:    {n} person{'s' if n != 1 else ''} tracked, none long enough to classify")
        else:
            lines.append(f"Result:    {len(persons)} person{'s' if len(persons) != 1 else ''}")
            for p in persons:
                lines.append(f"  person {p.get('track_id')}: {p.get('label')} {_pct(p.get('confidence'))} "
                             f"({_secs(p.get('start_s'))}–{_secs(p.get('end_s'))} s)")
        av = job.get("annotated_video") or {}
        if av.get("status") == "ready":
            lines.append(f"Annotated: ready, {api.absolute(av.get('url'))}")
        elif av.get("status") == "rendering":
            lines.append("Annotated: rendering")
        elif av.get("status") == "failed":
            lines.append(f"Annotated: failed ({av.get('error')})")
        links = job.get("links") or {}
        reports = [api.absolute(links[k]) for k in ("report_json", "report_csv", "report_html") if links.get(k)]
        if reports:
            lines.append("Reports:   " + "  ".join(reports))
    return lines


def _print(lines: list[str]) -> None:
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()


def safe_name(job_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", job_id)[:80] or "job"


# ------------------------------------------------------------------------------------------ commands
def cmd_submit(args, api: Api, progress: Progress) -> int:
    videos = collect_videos(args.video, args.recursive)
    if len(videos) != 1 or any(Path(v).is_dir() for v in args.video) or args.summary or args.jobs:
        if args.out:
            raise ClientError(EXIT_USAGE, "--out is for one video; with several use --summary")
        return submit_batch(args, api, progress, videos)
    video = videos[0]
    fields = submit_fields(args)
    try:
        created = api.upload(video, fields, progress)
    except ApiError as exc:
        if exc.body.get("id"):  # 503 queue unavailable: the job exists and is marked failed
            raise ClientError(exc.code, f"{exc.message}; job {exc.body['id']} was recorded as failed") from None
        raise
    job_id = str(created.get("id") or "")
    if not job_id:
        raise ClientError(EXIT_UNREACHABLE, "the server accepted the upload but sent no job id")
    args.job_id = job_id  # for the hint on Ctrl-C
    _print([job_id, api.absolute(created.get("url")) or api.absolute(api.job_path(job_id))])
    if created.get("job_key"):
        progress.message(f"job key (shown once; it signs this job's webhooks and deletes or re-runs it): "
                         f"{created['job_key']}")
    if not (args.wait or args.out):
        return EXIT_OK
    job = wait_for_job(api, job_id, is_final, progress, args.timeout, "the job")
    if job.get("status") == "failed":
        _print(describe_job(job, api))
        raise job_failed(job)
    _print(describe_job(job, api))
    if args.out:
        name, n = api.download(api.job_path(job_id, "/report.json"), args.out, progress, "report.json")
        if name != "-":
            progress.message(f"saved the JSON report to {name} ({_bytes(n)})")
    return EXIT_OK


def submit_fields(args) -> dict[str, str]:
    pairs = (("fps", args.fps), ("imgsz", args.imgsz), ("stride", args.stride), ("callback_url", args.callback_url))
    return {k: str(v) for k, v in pairs if v is not None}


def collect_videos(paths: list[str], recursive: bool = False) -> list[Path]:
    """The files named, and the videos (by extension) in the folders named (their subfolders with ``recursive``),
    each once, in the order given (a folder's sorted by path)."""
    found: list[Path] = []
    for name in paths:
        p = Path(name)
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            found.extend(sorted(f for f in p.glob(pattern) if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS))
        else:
            found.append(p)
    unique = list(dict.fromkeys(found))
    return unique


class BatchProgress:
    """One progress line per file on stderr: redrawn in place on a terminal, else a line when a file's state
    changes."""

    def __init__(self, labels: list[str], enabled: bool = True, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = _is_terminal(self.stream)
        self.labels = labels
        self.width = min(40, max((len(x) for x in labels), default=4))
        self.lines = ["waiting"] * len(labels)
        self.keys: list[Any] = [None] * len(labels)
        self._lock = threading.Lock()
        self._drawn = 0
        self._last = 0.0

    def _label(self, i: int) -> str:
        name = self.labels[i]
        return (name if len(name) <= self.width else "…" + name[-(self.width - 1):]).ljust(self.width)

    def set(self, i: int, text: str, key: Any = None, force: bool = False) -> None:
        if not self.enabled:
            return
        with self._lock:
            changed = key != self.keys[i]
            self.lines[i], self.keys[i] = text, key
            if self.tty:
                now = time.monotonic()
                if force or changed or now - self._last >= 0.1:
                    self._redraw()
                    self._last = now
            elif changed or force:
                self.stream.write(f"{self._label(i)}  {text}\n")
                self.stream.flush()

    def _redraw(self) -> None:
        cols = shutil.get_terminal_size((100, 24)).columns
        out = f"\x1b[{self._drawn}F" if self._drawn else ""
        for i, text in enumerate(self.lines):
            out += "\x1b[2K" + f"{self._label(i)}  {text}"[: max(10, cols - 1)] + "\n"
        self.stream.write(out)
        self.stream.flush()
        self._drawn = len(self.lines)

    def file(self, i: int) -> "_FileProgress":
        return _FileProgress(self, i)


class _FileProgress:
    """What :meth:`Api.upload` reports to, for one file of a batch."""

    def __init__(self, batch: BatchProgress, i: int):
        self.batch, self.i = batch, i

    def update(self, fraction: float | None, text: str, key: Any = None, force: bool = False) -> None:
        pct = "" if fraction is None else f"{max(0.0, min(1.0, fraction)) * 100:3.0f} % "
        self.batch.set(self.i, f"{pct}{text}", key=key, force=force)

    def finish(self) -> None:
        pass

    def message(self, text: str) -> None:
        self.batch.set(self.i, text, key=("message", text))


SUMMARY_COLUMNS = ("file", "job_id", "state", "action", "confidence", "persons", "video", "error", "page",
                   "report_json")


def _row(path: Path) -> dict[str, Any]:
    return {"file": str(path), "job_id": None, "state": "waiting", "action": None, "confidence": None,
            "persons": None, "video": None, "error": None, "page": None, "report_json": None, "people": [],
            "exit": EXIT_OK}


def _fill(row: dict[str, Any], job: dict, api: Api) -> None:
    """The row's state and main action from the job JSON."""
    summary = job.get("summary") or {}
    links = job.get("links") or {}
    row.update(state=job.get("status"), action=summary.get("overall_label"),
               confidence=summary.get("overall_confidence"), persons=summary.get("persons"),
               video=(job.get("annotated_video") or {}).get("status"), error=job.get("error"),
               page=api.absolute(links.get("page")), report_json=api.absolute(links.get("report_json")))
    persons = ((job.get("result") or {}).get("persons")) or []
    row["people"] = [{"track_id": p.get("track_id"), "label": p.get("label"), "confidence": p.get("confidence"),
                      "start_s": p.get("start_s"), "end_s": p.get("end_s")} for p in persons]
    if job.get("status") == "failed":
        row["exit"] = EXIT_JOB_FAILED


def submit_batch(args, api: Api, progress: Progress, videos: list[Path]) -> int:
    """Upload ``videos`` (``args.jobs`` at once), optionally wait for every job; a table, and ``args.summary``."""
    missing = [str(v) for v in videos if not v.is_file()]
    if missing:
        raise ClientError(EXIT_USAGE, f"no such file: {', '.join(missing)}")
    if not videos:
        raise ClientError(EXIT_USAGE, f"no videos ({', '.join(VIDEO_EXTENSIONS)}) in {', '.join(args.video)}"
                                      + ("" if args.recursive else " (--recursive to search subfolders)"))
    labels = _short_names(videos)
    bar = BatchProgress(labels, enabled=progress.enabled)
    rows = [_row(v) for v in videos]
    fields = submit_fields(args)
    interrupted = threading.Event()

    def upload(i: int) -> None:
        if interrupted.is_set():
            return
        row = rows[i]
        try:
            created = api.upload(videos[i], fields, bar.file(i))
        except ClientError as exc:
            body = getattr(exc, "body", {}) or {}
            row.update(state="refused" if exc.code == EXIT_REFUSED else "error", error=exc.message, exit=exc.code,
                       job_id=body.get("id"))
            bar.set(i, f"{row['state']}: {exc.message}", key="end", force=True)
            return
        row.update(job_id=created.get("id"), state=created.get("status") or "queued",
                   page=api.absolute(created.get("url")), job_key=created.get("job_key"))
        bar.set(i, f"submitted: job {row['job_id']}", key="submitted", force=True)

    jobs = max(1, int(args.jobs or DEFAULT_JOBS))
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="har-upload")
    try:
        for future in [pool.submit(upload, i) for i in range(len(videos))]:
            future.result()
    except KeyboardInterrupt:
        interrupted.set()
        pool.shutdown(wait=False, cancel_futures=True)
        _print_table(rows)
        raise
    pool.shutdown()

    if args.wait:
        _wait_all(api, rows, bar, args.timeout)
    _print_table(rows)
    if args.summary:
        write_summary(rows, args.summary)
    return next((r["exit"] for r in rows if r["exit"] != EXIT_OK), EXIT_OK)


def _short_names(videos: list[Path]) -> list[str]:
    """Names that tell the files apart: the file name, or the path when two files share a name."""
    names = [v.name for v in videos]
    return [str(v) if names.count(v.name) > 1 else v.name for v in videos]


def _wait_all(api: Api, rows: list[dict], bar: BatchProgress, timeout: float | None) -> None:
    deadline = None if timeout is None else time.monotonic() + timeout
    pending = [i for i, r in enumerate(rows) if r["job_id"] and r["exit"] == EXIT_OK]
    errors = 0
    while pending:
        for i in list(pending):
            try:
                job = api.job(rows[i]["job_id"])
                errors = 0
            except ClientError as exc:
                if exc.code != EXIT_UNREACHABLE or errors >= 3:
                    raise
                errors += 1
                continue
            fraction, text, key = job_progress_text(job)
            if is_final(job):
                _fill(rows[i], job, api)
                pending.remove(i)
                done = rows[i]["state"] == "done"
                what = f"done: {rows[i]['action'] or '-'} {_pct(rows[i]['confidence'])}" if done else \
                    f"failed: {rows[i]['error'] or 'no reason was recorded'}"
                bar.set(i, what, key=("end", rows[i]["state"]), force=True)
            else:
                rows[i]["state"] = job.get("status")
                pct = "" if fraction is None else f"{fraction * 100:3.0f} % "
                bar.set(i, pct + text, key=key)
        if not pending:
            break
        if deadline is not None and time.monotonic() >= deadline:
            for i in pending:
                rows[i].update(exit=EXIT_TIMEOUT, error=f"timed out after {timeout:g} s (the job goes on on the server)")
            break
        time.sleep(POLL_INTERVAL_S)


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def _print_table(rows: list[dict]) -> None:
    """FILE, JOB ID, STATE, ACTION on stdout (the action: the main one, with its confidence)."""
    table = [("FILE", "JOB ID", "STATE", "ACTION")]
    for r in rows:
        action = f"{r['action']}{'' if r['confidence'] is None else ' ' + _pct(r['confidence'])}" if r.get("action") else (
            _cell(r.get("error"))[:60] if r["state"] in ("failed", "refused", "error") else "-")
        table.append((r["file"], _cell(r.get("job_id")), _cell(r.get("state")), action))
    widths = [max(len(row[c]) for row in table) for c in range(4)]
    _print(["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table])
    done = sum(r["state"] == "done" for r in rows)
    failed = sum(r["state"] == "failed" for r in rows)
    not_sent = sum(r["state"] in ("refused", "error") for r in rows)
    _print([f"{len(rows)} files: {len(rows) - not_sent} submitted"
            + (f", {done} done" if done else "") + (f", {failed} failed" if failed else "")
            + (f", {not_sent} not submitted" if not_sent else "")])


def write_summary(rows: list[dict], target: str) -> None:
    """Every file's outcome: CSV (one row per file) or JSON (with each person's action), by the name's extension;
    ``-`` for JSON on stdout."""
    fmt = "json" if target == "-" or target.lower().endswith(".json") else "csv"
    if fmt == "json":
        doc = [{k: v for k, v in r.items() if k not in ("exit", "job_key")} for r in rows]
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    else:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in SUMMARY_COLUMNS})
        text = buf.getvalue()
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        Path(target).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ClientError(EXIT_USAGE, f"cannot write {target}: {exc.strerror or exc}") from None


def cmd_status(args, api: Api, progress: Progress) -> int:
    job = api.job(args.job_id)
    if args.wait and not is_final(job):
        job = wait_for_job(api, args.job_id, is_final, progress, args.timeout, "the job")
    if args.json:
        sys.stdout.write(json.dumps(job, indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    else:
        _print(describe_job(job, api))
    if job.get("status") == "failed":
        raise job_failed(job)
    return EXIT_OK


def _video_name(job_id: str) -> Callable[[http.client.HTTPResponse], str]:
    def pick(resp: http.client.HTTPResponse) -> str:
        ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
        ext = {"video/mp4": "mp4", "video/webm": "webm"}.get(ctype)
        if ext is None:
            m = re.search(r'filename="?[^";]*\.([A-Za-z0-9]{1,5})"?', resp.getheader("Content-Disposition") or "")
            ext = m.group(1).lower() if m else "mp4"
        return f"{safe_name(job_id)}.{ext}"

    return pick


def cmd_download(args, api: Api, progress: Progress) -> int:
    job_id, fmt = args.job_id, args.format
    folder = Path(args.out) if args.out and args.out != "-" and Path(args.out).is_dir() else None
    if fmt == "video":
        path, label = api.job_path(job_id, "/video"), "annotated video"
        pick = _video_name(job_id)
        out = (lambda resp: str(folder / pick(resp))) if folder else args.out or pick
    else:
        path, label = api.job_path(job_id, f"/report.{fmt}"), f"report.{fmt}"
        name = f"{safe_name(job_id)}.{fmt}"
        out = str(folder / name) if folder else args.out or name
    waited = False
    while True:
        try:
            name, n = api.download(path, out, progress, label)
            break
        except ApiError as exc:
            if waited or exc.error not in ("not_ready", "not_available"):
                raise
            # not ready: find out why from the job itself
            job = api.job(job_id)
            if job.get("status") == "failed":
                raise job_failed(job) from None
            video = (job.get("annotated_video") or {})
            if job.get("status") == "done" and (fmt != "video" or video.get("status") == "ready"):
                waited = True  # it became ready meanwhile: once more
                continue
            if fmt == "video" and job.get("status") == "done":
                if video.get("status") == "failed":
                    raise ClientError(EXIT_JOB_FAILED, f"the annotated video of job {job_id} could not be rendered: "
                                                       f"{video.get('error') or 'no reason was recorded'}") from None
                if video.get("status") != "rendering":
                    raise
            if not args.wait:
                if fmt == "video" and job.get("status") == "done":
                    why = "the annotated video is still being rendered (the reports are ready)"
                else:
                    why = f"the job is not done yet (it is {job.get('status')})"
                raise ClientError(EXIT_NOT_READY, f"not ready: {why}; try again later, or use --wait") from None
            until = video_settled if fmt == "video" else is_final
            job = wait_for_job(api, job_id, until, progress, args.timeout,
                               "the annotated video" if fmt == "video" else "the job")
            waited = True
            if job.get("status") == "failed":
                raise job_failed(job) from None
            if fmt == "video" and video_settled(job) and (job.get("annotated_video") or {}).get("status") == "failed":
                video = job["annotated_video"]
                raise ClientError(EXIT_JOB_FAILED, f"the annotated video of job {job_id} could not be rendered: "
                                                   f"{video.get('error') or 'no reason was recorded'}") from None
    if name != "-":
        _print([f"saved {label} of job {job_id} to {name} ({_bytes(n)})"])
    return EXIT_OK


# ------------------------------------------------------------------------------------------ CLI
def _positive(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not x > 0 or x != x:
        raise argparse.ArgumentTypeError(f"must be more than 0: {value!r}")
    return x


def _prog() -> str:
    """``har`` when run as the installed command, else ``python -m har.client``."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "har" if name == "har" else "python -m har.client"


def build_parser() -> argparse.ArgumentParser:
    # connection options are accepted before or after the command (SUPPRESS: the command's copy does not
    # overwrite a value given before it)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS,
                        help=f"the HAR server (default: $HAR_URL or {DEFAULT_URL})")
    common.add_argument("--token", default=argparse.SUPPRESS,
                        help="bearer token sent as 'Authorization: Bearer TOKEN' (default: $HAR_TOKEN)")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress output on stderr")

    parser = argparse.ArgumentParser(
        prog=_prog(), parents=[common],
        description="Client for the HAR video action-recognition service (its REST API).",
        epilog="Exit codes: 0 ok; 1 job failed; 2 usage error; 3 server unreachable or HTTP 5xx; "
               "4 request refused (HTTP 4xx); 5 timed out waiting; 6 not ready yet; 130 interrupted.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def waiting(p, what):
        p.add_argument("--wait", action="store_true", help=what)
        p.add_argument("--timeout", type=_positive, metavar="SECONDS",
                       help="give up waiting after this many seconds (exit code 5); default: no limit")

    p = sub.add_parser("submit", parents=[common], help="upload videos and start their jobs",
                       description="Upload a video and start a job; prints the job id, then its page URL. Several "
                                   "files or folders: uploads them (--jobs at once), then a table of the jobs.")
    p.add_argument("video", nargs="+", metavar="VIDEO", help="video files (mp4, mov, avi, mkv, webm) or folders")
    p.add_argument("--fps", type=float, help="frames per second analysed (5-60; default: the model's rate)")
    p.add_argument("--imgsz", type=int, help="pose model input size in pixels (320-1280, a multiple of 32)")
    p.add_argument("--stride", type=int, help="sampled frames between classification windows (1-32)")
    p.add_argument("--callback-url", metavar="URL", help="webhook: POSTed signed events when each job ends and "
                                                         "when its annotated video is ready")
    waiting(p, "follow the jobs with progress until they are done or failed")
    p.add_argument("--out", metavar="REPORT.json", help="one video: write the JSON report here once done "
                                                        "(implies --wait)")
    p.add_argument("-r", "--recursive", action="store_true", help="folders: their subfolders' videos too")
    p.add_argument("-j", "--jobs", type=int, metavar="N", help=f"uploads at once (default {DEFAULT_JOBS})")
    p.add_argument("--summary", metavar="FILE", help="several videos: write every file's outcome here, CSV or "
                                                     "JSON by the extension (- for JSON on stdout)")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", parents=[common], help="a job's state, progress and result",
                       description="A job's state and progress; once done, every person's overall action.")
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("--json", action="store_true", help="print the API's JSON for the job as it is")
    waiting(p, "follow the job until it is done or failed first")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("download", parents=[common], help="download a report or the annotated video",
                       description="Stream a report (csv, json, html) or the annotated video to a file.")
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("--format", "-f", choices=FORMATS, required=True)
    p.add_argument("--out", "-o", metavar="PATH",
                   help="the file (or folder) to write it to (default: JOB_ID.FORMAT in the current folder, "
                        ".mp4/.webm for the video; - for stdout)")
    waiting(p, "if it is not ready yet, follow the job (and the video) until it is, then download it")
    p.set_defaults(func=cmd_download)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "submit":
        for name in args.video:
            video = Path(name)
            if not (video.is_file() or video.is_dir()):
                parser.error(f"{name}: no such file" if not video.exists() else f"{name}: not a file or folder")
        if args.jobs is not None and args.jobs < 1:
            parser.error("--jobs must be at least 1")
    url = getattr(args, "url", None) or os.environ.get("HAR_URL") or DEFAULT_URL
    token = getattr(args, "token", None) or os.environ.get("HAR_TOKEN") or None
    progress = Progress(enabled=not getattr(args, "quiet", False))
    try:
        api = Api(url, token)
        return args.func(args, api, progress)
    except ClientError as exc:
        progress.finish()
        if exc.code == EXIT_USAGE:
            parser.exit(EXIT_USAGE, f"{parser.prog}: error: {exc.message}\n")
        sys.stderr.write(f"error: {exc.message}\n")
        return exc.code
    except KeyboardInterrupt:
        progress.finish()
        job_id = getattr(args, "job_id", None)
        hint = f"; job {job_id} goes on on the server: python -m har.client status {job_id}" if job_id else ""
        sys.stderr.write(f"interrupted{hint}\n")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
