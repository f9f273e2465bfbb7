"""Rate limit of new jobs (uploads and re-runs) per client, kept in Redis so every web process shares it.

``HAR_UPLOAD_RATE`` ("20/hour", "5/10min", "100/day"; "0" or "off": no limit) is counted over a sliding window
(a sorted set of request times per client, checked and updated by one Lua script on Redis' own clock, so the
web processes agree). A client is its API token (every IP), or an anonymous identity *and* its IP address: both
must be under the limit, so a client dropping its cookie still counts against its address. Every attempt to
upload counts, refused or not (it is counted before the body is read); a re-run counts when it creates a job.
Over the limit: 429 with ``Retry-After`` (seconds until the oldest counted request leaves the window).

When Redis cannot be reached the limit is not applied (logged): the limiter never blocks uploads by itself.
"""
from __future__ import annotations

import logging
import math
import re
import uuid
from dataclasses import dataclass

from flask import current_app, request

log = logging.getLogger(__name__)

KEY_PREFIX = "har:ratelimit:jobs:"
UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600,
         "d": 86400, "day": 86400}
RATE_RE = re.compile(r"^\s*(\d+)\s*(?:/|per)\s*(\d+)?\s*([a-z]+?)s?\s*$")

# KEYS: the client's counters; ARGV: limit, window (ms), a unique member. Returns 0 (counted) or the ms to wait.
SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local now = redis.call('TIME')
local t = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local wait = 0
for _, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', t - window)
  if redis.call('ZCARD', key) >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local w = tonumber(oldest[2]) + window - t
    if w < 1 then w = 1 end
    if w > wait then wait = w end
  end
end
if wait > 0 then return wait end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, t, ARGV[3])
  redis.call('PEXPIRE', key, window)
end
return 0
"""


@dataclass(frozen=True)
class Rate:
    limit: int
    window_s: int

    def __str__(self) -> str:
        return f"{self.limit}/{human_duration(self.window_s, exact=True)}"


def parse_rate(raw: str) -> Rate | None:
    """``"20/hour"`` → Rate(20, 3600); ``"5/10min"``, ``"100 per day"``; ``""``, ``"0"``, ``"off"`` → None."""
    text = (raw or "").strip().lower()
    if text in ("", "0", "off", "none", "no"):
        return None
    m = RATE_RE.match(text)
    if not m or m.group(3) not in UNITS:
        raise ValueError(f"HAR_UPLOAD_RATE must look like '20/hour', '5/10min' or '100/day' (or 0/off), got {raw!r}")
    limit, count = int(m.group(1)), int(m.group(2) or 1)
    if limit == 0:
        return None
    if count == 0:
        raise ValueError(f"HAR_UPLOAD_RATE has an empty window: {raw!r}")
    return Rate(limit, count * UNITS[m.group(3)])


def human_duration(seconds: float, exact: bool = False) -> str:
    """A rate's window (``exact``): 3600 → "hour", 600 → "10 minutes"; a wait, rounded up: 45 → "45 seconds",
    700 → "12 minutes", 5400 → "90 minutes", 9000 → "3 hours"."""
    s = max(0, int(math.ceil(seconds)))
    if exact:
        for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
            if s >= size and s % size == 0:
                n = s // size
                return unit if n == 1 else f"{n} {unit}s"
        return "second" if s == 1 else f"{s} seconds"
    for unit, size, below in (("second", 1, 120), ("minute", 60, 7200), ("hour", 3600, 2 * 86400)):
        if s < below:
            n = math.ceil(s / size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    n = math.ceil(s / 86400)
    return f"{n} days"


class RateLimiter:
    def __init__(self, rate: Rate | None, redis_url: str):
        self.rate = rate
        self.redis_url = redis_url
        self._client = None
        self._script = None

    def _redis(self):
        if self._client is None:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            # no retries: a Redis that is down or slow delays an upload by at most a second, then is skipped
            self._client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=0.5, socket_timeout=0.5,
                                                retry=Retry(NoBackoff(), 0))
            self._script = self._client.register_script(SCRIPT)
        return self._script

    def hit(self, keys: list[str]) -> float:
        """Count one request for every key; 0 when allowed, else the seconds to wait (nothing counted)."""
        if self.rate is None or not keys:
            return 0.0
        try:
            wait_ms = self._redis()(keys=[KEY_PREFIX + k for k in keys],
                                    args=[self.rate.limit, self.rate.window_s * 1000, uuid.uuid4().hex])
        except Exception as exc:  # noqa: BLE001 - Redis down or failing: let the request through
            log.warning("rate limit not applied: Redis is unavailable (%s: %s)", type(exc).__name__, exc)
            return 0.0
        return int(wait_ms) / 1000.0


def init_app(app) -> None:
    settings = app.extensions["har"]["settings"]
    app.extensions["har"]["ratelimiter"] = RateLimiter(parse_rate(settings.upload_rate), settings.redis_url)


def client_keys(principal) -> list[str]:
    """The counters of a client: its token, or its anonymous identity and its IP address."""
    if principal.authenticated:
        return [f"token:{principal.token_name}"]
    keys = [f"anon:{principal.anonymous_id}"] if principal.anonymous_id else []
    return keys + [f"ip:{request.remote_addr or 'unknown'}"]


def check_new_job(principal) -> None:
    """Count a new job for the client; :class:`web.auth.AccessError` 429 when it is over the limit."""
    from .auth import AccessError

    limiter: RateLimiter = current_app.extensions["har"]["ratelimiter"]
    wait = limiter.hit(client_keys(principal))
    if wait <= 0:
        return
    retry = max(1, math.ceil(wait))
    raise AccessError(429, "rate_limited",
                      f"Too many uploads: at most {limiter.rate.limit} new jobs (uploads and re-runs) per "
                      f"{human_duration(limiter.rate.window_s, exact=True)} from one client. "
                      f"Try again in {human_duration(retry)}.",
                      headers={"Retry-After": str(retry)})
