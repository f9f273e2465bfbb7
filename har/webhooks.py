"""Webhooks: a job notifies its ``callback_url`` when it ends and when its annotated video is ready or failed.

Events (``EVENTS``): ``job.done``, ``job.failed``, ``video.ready``, ``video.failed``. Each becomes one
:class:`~har.db.WebhookDelivery` row, written by :func:`har.jobs.set_status` in the same transaction as the state
change, and is sent by the Celery task ``har.webhook`` (queue ``HAR_WEBHOOK_QUEUE``, worker/webhooks.py) once that
transaction commits (:func:`_publish_after_commit`); the workers' sweep sends again what was never published.

A delivery is a JSON POST of the body stored with the row (a retry sends the same bytes), signed with HMAC-SHA256
over ``"<t>.<body>"`` in the header ``Har-Signature: t=<unix seconds>,v1=<hex digest>``. The secret is the job's
owner token's webhook secret (``flask --app web tokens webhook NAME``) or, for a job submitted without a token, the
job's own key (``job_key``, returned once in the 202 of its submission). :func:`verify_signature` is what a receiver
runs (README: Webhooks).

Safety (:func:`check_url`, :func:`resolve_target`): only http(s); the host's addresses are resolved and loopback,
private, link-local, shared, reserved, multicast and cloud metadata addresses are refused (all but the metadata
ones allowed with ``HAR_WEBHOOK_ALLOW_PRIVATE``), at submission and again at each attempt, and the connection goes to
the address that was checked (no second lookup for the request); short timeouts; redirects are not followed (a 3xx
counts as a failure); only the first :data:`EXCERPT_CHARS` characters of the answer are kept.
"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import secrets
import socket
import ssl
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import event, select
from sqlalchemy.orm import Session

log = logging.getLogger("har.webhooks")

JOB_DONE = "job.done"
JOB_FAILED = "job.failed"
VIDEO_READY = "video.ready"
VIDEO_FAILED = "video.failed"
EVENTS = (JOB_DONE, JOB_FAILED, VIDEO_READY, VIDEO_FAILED)

# delivery states
PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"

SIGNATURE_HEADER = "Har-Signature"
JOB_KEY_PREFIX = "hjk_"
WEBHOOK_SECRET_PREFIX = "whsec_"
MAX_URL_CHARS = 2048
EXCERPT_CHARS = 500
USER_AGENT = "har-webhook/1"
# addresses of cloud instance metadata services: refused even with HAR_WEBHOOK_ALLOW_PRIVATE
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "169.254.169.253", "fd00:ec2::254", "100.100.100.200", "192.0.0.192"))
RETRY_STATUS = frozenset({408, 425, 429})  # besides 5xx: the receiver asks to try later
PENDING_KEY = "har_webhook_pending"


def new_job_key() -> str:
    """A job's own key: signs its webhooks and manages the job (``Authorization: Bearer hjk_…``)."""
    return JOB_KEY_PREFIX + secrets.token_urlsafe(32)


def new_webhook_secret() -> str:
    return WEBHOOK_SECRET_PREFIX + secrets.token_urlsafe(32)


# ------------------------------------------------------------------------------------- signing
def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``Har-Signature`` header value for ``body``: ``t=<unix seconds>,v1=<hex HMAC-SHA256>``."""
    t = int(time.time() if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify_signature(secret: str, body: bytes, header: str, tolerance_s: float = 300, now: float | None = None) -> bool:
    """What a receiver checks: one of the header's ``v1`` digests matches, and ``t`` is within ``tolerance_s`` of
    now (an old delivery replayed is refused)."""
    parts = [p.strip().partition("=") for p in (header or "").split(",")]
    stamps = [v for k, _, v in parts if k == "t"]
    digests = [v for k, _, v in parts if k == "v1"]
    if len(stamps) != 1 or not stamps[0].isdigit() or not digests:
        return False
    t = int(stamps[0])
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, d) for d in digests)


# --------------------------------------------------------------------------------- URL safety
class UnsafeURL(ValueError):
    """A callback URL that is not allowed (message for people)."""


def _address_refused(ip, allow_private: bool) -> str | None:
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_multicast or ip.is_unspecified:
        return "not a host address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _address_refused(ip.ipv4_mapped, allow_private)
    if allow_private:
        return None
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "not a public address"
    return None


def check_url(url: str, allow_private: bool = False, resolve: bool = True) -> str:
    """The callback URL, stripped, if it may be used; :class:`UnsafeURL` otherwise. With ``resolve`` a host name is
    looked up and refused when one of its addresses is (a name that does not resolve now is accepted: each attempt
    checks again)."""
    url = (url or "").strip()
    if len(url) > MAX_URL_CHARS:
        raise UnsafeURL(f"callback_url is longer than {MAX_URL_CHARS} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeURL("callback_url is not a valid URL.") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL("callback_url must be an http:// or https:// URL.")
    host = parts.hostname
    if not host:
        raise UnsafeURL("callback_url has no host.")
    if port == 0:
        raise UnsafeURL("callback_url has no valid port.")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        why = _address_refused(literal, allow_private)
        if why:
            raise UnsafeURL(f"callback_url points to {why} ({host}); webhooks go to public addresses only.")
    elif resolve:
        try:
            _resolve(host, port or (443 if parts.scheme == "https" else 80), allow_private)
        except socket.gaierror:
            pass
    return url


def _resolve(host: str, port: int, allow_private: bool) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    for a in addresses:
        why = _address_refused(ipaddress.ip_address(a.split("%", 1)[0]), allow_private)
        if why:
            raise UnsafeURL(f"callback_url's host {host} resolves to {why} ({a}); webhooks go to public addresses "
                            "only.")
    return addresses


def resolve_target(url: str, allow_private: bool) -> tuple[str, str, int, list[str]]:
    """(scheme, host, port, checked addresses) for a delivery; :class:`UnsafeURL` when refused, ``OSError`` when the
    name does not resolve."""
    check_url(url, allow_private, resolve=False)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname, port, _resolve(parts.hostname, port, allow_private)


# ----------------------------------------------------------------------------------- sending
@dataclass
class Attempt:
    status_code: int | None
    error: str | None
    excerpt: str
    retry: bool  # worth trying again later
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to an address that was checked, with the certificate verified for the URL's host name."""

    def __init__(self, address: str, host: str, port: int, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post(url: str, body: bytes, headers: dict[str, str], *, allow_private: bool, connect_timeout: float,
         read_timeout: float) -> Attempt:
    """One POST of ``body`` to ``url`` (no redirects followed, only an excerpt of the answer read)."""
    t0 = time.monotonic()

    def done(status=None, error=None, excerpt="", retry=False) -> Attempt:
        return Attempt(status, error, excerpt, retry, int((time.monotonic() - t0) * 1000))

    try:
        scheme, host, port, addresses = resolve_target(url, allow_private)
    except UnsafeURL as exc:
        return done(error=f"refused: {exc}")
    except OSError as exc:
        return done(error=f"the host name could not be resolved ({exc})", retry=True)
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    last_error = "no address"
    for address in addresses[:3]:
        if scheme == "https":
            conn = _PinnedHTTPSConnection(address, host, port, connect_timeout)
        else:
            conn = http.client.HTTPConnection(address, port, timeout=connect_timeout)
        try:
            try:
                conn.connect()
            except OSError as exc:
                last_error = f"could not connect to {address}:{port} ({type(exc).__name__}: {exc})"
                continue
            conn.sock.settimeout(read_timeout)
            host_header = host if port == (443 if scheme == "https" else 80) else f"{host}:{port}"
            if ":" in host and not host.startswith("["):
                host_header = f"[{host}]" + ("" if port == (443 if scheme == "https" else 80) else f":{port}")
            conn.putrequest("POST", path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", host_header)
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            excerpt = resp.read(EXCERPT_CHARS * 4).decode("utf-8", "replace")[:EXCERPT_CHARS]
            status = resp.status
            retry = status >= 500 or status in RETRY_STATUS
            error = None
            if 300 <= status < 400:
                error = f"redirect to {resp.getheader('Location', '?')[:200]} not followed"
            elif not 200 <= status < 300:
                error = f"HTTP {status}"
            return done(status, error, excerpt, retry)
        except (socket.timeout, TimeoutError):
            return done(error=f"timed out after {read_timeout:g} s waiting for the answer", retry=True)
        except (OSError, http.client.HTTPException) as exc:
            return done(error=f"{type(exc).__name__}: {exc}"[:300], retry=True)
        finally:
            conn.close()
    return done(error=last_error, retry=True)


def retry_delay(attempts: int, base_s: float, max_s: float) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: ``base_s`` doubled each time, at most ``max_s``."""
    return min(max_s, base_s * 2 ** max(0, attempts - 1))


# ---------------------------------------------------------------------------------- payloads
def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    dt = dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def payload(job, name: str, at: datetime | None = None) -> dict[str, Any]:
    """The JSON document of event ``name`` for ``job`` (docs/contracts.md: Webhooks)."""
    base = (job.public_url or "").rstrip("/")
    api = f"{base}/api/jobs/{job.id}"
    done = job.status == "done"
    video_ready = job.video_status == "ready"
    people = []
    for p in ((job.result or {}).get("persons") or []) if done else []:
        people.append({"track_id": p.get("track_id"), "label": p.get("label"), "confidence": p.get("confidence")})
    return {
        "id": str(uuid.uuid4()),
        "event": name,
        "created_at": _iso(at or datetime.now(timezone.utc)),
        "job": {
            "id": job.id,
            "status": job.status,
            "error": job.error if job.status == "failed" else None,
            "video_status": job.video_status,
            "video_error": job.video_error if job.video_status == "failed" else None,
            "original_filename": job.video.original_filename if job.video is not None else None,
            "created_at": _iso(job.created_at),
            "finished_at": _iso(job.finished_at),
        },
        "summary": {
            "overall_label": job.overall_label if done else None,
            "overall_confidence": job.overall_confidence if done else None,
            "persons": job.persons if done else None,
            "people": people,
        },
        "links": {
            "self": api,
            "page": f"{base}/jobs/{job.id}",
            "report_json": f"{api}/report.json" if done else None,
            "report_csv": f"{api}/report.csv" if done else None,
            "report_html": f"{api}/report.html" if done else None,
            "video": f"{api}/video" if done and video_ready else None,
        },
    }


def body_bytes(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), sort_keys=False)


def record_event(session: Session, job, name: str) -> None:
    """A pending delivery of event ``name`` for ``job`` (when it has a callback URL), in the caller's transaction;
    its task is sent once that transaction commits."""
    if not job.callback_url:
        return
    from har.db import WebhookDelivery, utcnow

    now = utcnow()
    row = WebhookDelivery(job_id=job.id, event=name, url=job.callback_url, body=body_bytes(payload(job, name, now)),
                          status=PENDING, attempts=0, next_attempt_at=now, created_at=now, updated_at=now,
                          attempt_log=[])
    session.add(row)
    session.flush()
    session.info.setdefault(PENDING_KEY, []).append(row.id)


def resend(session: Session, delivery) -> Any:
    """A new pending delivery of the same event (the same body: receivers tell repeats apart by its ``id``) to the
    job's callback URL now; the caller commits."""
    from har.db import WebhookDelivery, utcnow

    now = utcnow()
    job_url = delivery.job.callback_url if delivery.job is not None else None
    row = WebhookDelivery(job_id=delivery.job_id, event=delivery.event, url=job_url or delivery.url, body=delivery.body,
                          status=PENDING, attempts=0, next_attempt_at=now, created_at=now, updated_at=now,
                          attempt_log=[], redelivery_of=delivery.id)
    session.add(row)
    session.flush()
    session.info.setdefault(PENDING_KEY, []).append(row.id)
    return row


def signing_secret(session: Session, job) -> str | None:
    """The secret that signs ``job``'s webhooks: its owner token's, or the job's own key."""
    owner = job.owner or ""
    if owner.startswith("token:"):
        from har.db import ApiToken

        row = session.scalar(select(ApiToken).where(ApiToken.name == owner[len("token:"):],
                                                    ApiToken.revoked_at.is_(None)))
        return row.webhook_secret if row is not None else None
    return job.job_key


def first_pending(session: Session, job_id: str) -> int | None:
    """The oldest pending delivery of a job: a job's events are sent in order, one at a time."""
    from har.db import WebhookDelivery

    return session.scalar(select(WebhookDelivery.id).where(WebhookDelivery.job_id == job_id,
                                                           WebhookDelivery.status == PENDING)
                          .order_by(WebhookDelivery.id).limit(1))


def as_utc(dt: datetime | None) -> datetime | None:
    return None if dt is None else (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc))


def due_in(row, now: datetime) -> float:
    nxt = as_utc(row.next_attempt_at)
    return 0.0 if nxt is None else max(0.0, (nxt - now).total_seconds())


# ------------------------------------------------------------------------- after the commit
def publish(settings, delivery_id: int, countdown: float | None = None) -> bool:
    """Send the ``har.webhook`` task of a delivery; False (logged) when the broker cannot be reached (the sweep
    sends it later)."""
    try:
        from worker.celery_app import WEBHOOK_TASK, send_task

        send_task(WEBHOOK_TASK, delivery_id, settings, countdown=countdown)
        return True
    except Exception:  # noqa: BLE001 - the sweep sends what was not published
        log.warning("webhook delivery %s: could not be queued; the sweep will send it", delivery_id, exc_info=True)
        return False


@event.listens_for(Session, "after_commit")
def _publish_after_commit(session: Session) -> None:
    pending = session.info.pop(PENDING_KEY, None)
    settings = session.info.get("har_settings")
    if not pending or settings is None:
        return
    for delivery_id in pending:
        publish(settings, delivery_id)


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(PENDING_KEY, None)


def utc_in(seconds: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)
