"""Webhook deliveries (queue ``webhook``): the task ``har.webhook`` sends one pending delivery (har/webhooks.py).

A delivery is claimed before it is sent (its ``next_attempt_at`` moved a lease ahead, in one transaction), so two
messages for one delivery never send it twice at once, and a worker that dies mid-send leaves it to the sweep once
the lease runs out. A job's deliveries go out in order: a delivery waits while an older one of the same job is
pending, and each delivery that ends (delivered, or given up) sends the next one of its job.

After a failed attempt (timeout, connection error, 5xx, 408/425/429) the next one is due after
``HAR_WEBHOOK_RETRY_BASE_S`` doubled per attempt (at most ``HAR_WEBHOOK_RETRY_MAX_S``), until
``HAR_WEBHOOK_GIVE_UP_S`` after the first attempt: then the delivery is failed. Other answers (4xx, 3xx: redirects
are not followed) and refused addresses fail it at once. Short waits ride on the message's countdown; longer ones
(and any message lost on the way) are sent by :func:`sweep_deliveries`, which every worker's sweep runs.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select, update

from har import webhooks
from har.config import Settings
from har.database import session_scope
from har.db import WebhookDelivery, utcnow
from har.jobs import as_utc
from worker.celery_app import WEBHOOK_TASK, celery_app, get_settings

log = logging.getLogger("worker.webhooks")

COUNTDOWN_MAX_S = 300.0  # a retry due later than this is left to the sweep (no long-lived ETA messages)
LEASE_EXTRA_S = 30.0


def _lease_s(settings: Settings) -> float:
    return settings.webhook_connect_timeout_s + settings.webhook_read_timeout_s + LEASE_EXTRA_S


def _claim(settings: Settings, delivery_id: int):
    """(delivery row detached, job's signing secret) when this task may send it now, else None."""
    now = utcnow()
    with session_scope(settings) as s:
        row = s.get(WebhookDelivery, delivery_id)
        if row is None or row.status != webhooks.PENDING:
            return None
        if webhooks.first_pending(s, row.job_id) != row.id:
            log.info("webhook %s (%s of job %s): waits for the job's earlier deliveries", row.id, row.event,
                     row.job_id)
            return None
        due = as_utc(row.next_attempt_at)
        if due is not None and due > now + timedelta(seconds=1):
            return None  # not yet (or held by another task's lease)
        # claim: only one task wins the conditional update
        res = s.execute(update(WebhookDelivery)
                        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == webhooks.PENDING,
                               WebhookDelivery.next_attempt_at == row.next_attempt_at)
                        .values(next_attempt_at=now + timedelta(seconds=_lease_s(settings))),
                        execution_options={"synchronize_session": False})
        if not res.rowcount:
            return None
        secret = webhooks.signing_secret(s, row.job) if row.job is not None else None
        s.expunge(row)
        return row, secret


def deliver(settings: Settings, delivery_id: int) -> str | None:
    """One attempt at a pending delivery; the state it is left in (None: not this task's to send now)."""
    claimed = _claim(settings, delivery_id)
    if claimed is None:
        return None
    row, secret = claimed
    body = row.body.encode("utf-8")
    if not secret:
        attempt = webhooks.Attempt(None, "no signing secret: the job's API token was revoked", "", False, 0)
    else:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": webhooks.USER_AGENT,
            webhooks.SIGNATURE_HEADER: webhooks.sign(secret, body),
            "Har-Event": row.event,
            "Har-Delivery": str(row.id),
            "Har-Job": row.job_id,
        }
        attempt = webhooks.post(row.url, body, headers, allow_private=settings.webhook_allow_private,
                                connect_timeout=settings.webhook_connect_timeout_s,
                                read_timeout=settings.webhook_read_timeout_s)
    state, retry_in = _record(settings, row, attempt)
    if retry_in is not None and retry_in <= COUNTDOWN_MAX_S and not settings.task_always_eager:
        webhooks.publish(settings, row.id, countdown=retry_in)
    if state in (webhooks.DELIVERED, webhooks.FAILED):
        _send_next(settings, row.job_id)
    return state


def _record(settings: Settings, row: WebhookDelivery, attempt: webhooks.Attempt) -> tuple[str, float | None]:
    """Write the attempt into the delivery; (its new state, seconds until the next attempt or None)."""
    now = utcnow()
    with session_scope(settings) as s:
        d = s.get(WebhookDelivery, row.id)
        if d is None:  # the job was deleted meanwhile
            return webhooks.FAILED, None
        d.attempts = (d.attempts or 0) + 1
        first = as_utc(_parse(d.attempt_log[0]["at"])) if d.attempt_log else None
        first = first or now
        entry = {"at": now.isoformat(), "status_code": attempt.status_code, "error": attempt.error,
                 "duration_ms": attempt.duration_ms, "retry_in_s": None}
        retry_in = None
        if attempt.ok:
            d.status, d.delivered_at, d.next_attempt_at = webhooks.DELIVERED, now, None
        elif attempt.retry:
            retry_in = webhooks.retry_delay(d.attempts, settings.webhook_retry_base_s, settings.webhook_retry_max_s)
            if (now - first).total_seconds() + retry_in > settings.webhook_give_up_s:
                d.status, d.next_attempt_at, retry_in = webhooks.FAILED, None, None
                entry["error"] = f"{attempt.error}; gave up after {d.attempts} attempts"
            else:
                d.next_attempt_at = now + timedelta(seconds=retry_in)
                entry["retry_in_s"] = retry_in
        else:
            d.status, d.next_attempt_at = webhooks.FAILED, None
        d.attempt_log = [*(d.attempt_log or []), entry]
        d.last_status_code = attempt.status_code
        d.last_error = entry["error"]
        d.response_excerpt = attempt.excerpt or None
        d.updated_at = now
        state = d.status
    level = logging.INFO if attempt.ok else logging.WARNING
    log.log(level, "webhook %s (%s of job %s) to %s: attempt %d: %s%s", row.id, row.event, row.job_id, row.url,
            d.attempts, attempt.status_code or "-", f" ({entry['error']})" if entry["error"] else "")
    return state, retry_in


def _parse(text: str):
    from datetime import datetime

    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None


def _send_next(settings: Settings, job_id: str) -> None:
    with session_scope(settings) as s:
        nxt = webhooks.first_pending(s, job_id)
        row = s.get(WebhookDelivery, nxt) if nxt is not None else None
        wait = webhooks.due_in(row, utcnow()) if row is not None else None
    if row is not None and wait <= COUNTDOWN_MAX_S:
        webhooks.publish(settings, nxt, countdown=wait or None)


def sweep_deliveries(settings: Settings, grace_s: float | None = None) -> list[int]:
    """Send every job's first pending delivery that is due since ``grace_s`` (default ``settings.unsent_after_s``)
    and has no message on its way: a retry due after a long wait, or a message lost (the web app or a worker stopped
    between its commit and the publish, Redis restarted). A duplicate message is harmless (the claim)."""
    grace = settings.unsent_after_s if grace_s is None else grace_s
    cutoff = utcnow() - timedelta(seconds=grace)
    with session_scope(settings) as s:
        rows = s.execute(select(WebhookDelivery.id, WebhookDelivery.job_id, WebhookDelivery.next_attempt_at)
                         .where(WebhookDelivery.status == webhooks.PENDING)
                         .order_by(WebhookDelivery.id)).all()
    sent: list[int] = []
    seen: set[str] = set()
    for delivery_id, job_id, due in rows:
        if job_id in seen:
            continue  # only each job's first pending delivery: the others follow it
        seen.add(job_id)
        due = as_utc(due)
        if due is not None and due > cutoff:
            continue
        if webhooks.publish(settings, delivery_id):
            sent.append(delivery_id)
        else:
            break  # the broker is unreachable: the next pass
    if sent:
        log.warning("sweep: webhook deliveries sent again: %s", sent)
    return sent


@celery_app.task(name=WEBHOOK_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def webhook_task(self, delivery_id: int) -> str | None:
    try:
        return deliver(get_settings(), int(delivery_id))
    except Exception:  # noqa: BLE001 - the sweep sends it again once its lease runs out
        log.exception("webhook %s: the delivery could not be recorded", delivery_id)
        return None
