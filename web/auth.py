"""Who is asking, and what they may do: job owners, API tokens, the browser's anonymous identity.

Every job belongs to whoever submitted it (``jobs.owner``):

- ``token:<name>`` — a client sending ``Authorization: Bearer <token>``, or a browser signed in with a token on
  the /token page (the token's row id is kept in the signed session, and checked on every request). Tokens come
  from ``flask --app web tokens create NAME``; only their SHA-256 is stored. Jobs belong to the token's *name*:
  a new token made under the name of a revoked one takes over its jobs (that is how a token is rotated).
- ``anon:<id>`` — any other client: a random id in a signed cookie (``har_identity``: a year, HttpOnly,
  SameSite=Lax, Secure over https), signed with the app's secret key (``HAR_SECRET_KEY``, or the key generated
  once in ``HAR_DATA_DIR`` and shared by every process using that directory), so it survives restarts.

- a job's own key (``Authorization: Bearer hjk_…``, returned once in the 202 of a submission without a token, and
  signing the job's webhooks: har/webhooks.py) — manages that one job (delete, re-run, its webhook log), nothing
  else; jobs it submits belong to that job's owner.

Rules: the history (page and API) lists only the client's own jobs (a browser signed in with a token: the
token's and the browser's); delete and re-run are for the owner, or an admin token (``--admin``), else 403;
job pages, status, reports and the annotated video stay readable by anyone with the job's id (an unguessable
UUID). Jobs from before owners were recorded (owner null) are listed to nobody and only an admin token may delete
or re-run them. ``HAR_AUTH=required``: submitting a job (upload, re-run) needs a token (401). A token that is
not valid (unknown, revoked, malformed header) is refused with 401 on every page and API call.
"""
from __future__ import annotations

import hashlib
import logging
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import click
from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    g,
    has_request_context,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from har.db import ApiToken, utcnow
from har.webhooks import JOB_KEY_PREFIX, new_webhook_secret

from .uploads import UploadError

log = logging.getLogger(__name__)

IDENTITY_COOKIE = "har_identity"
IDENTITY_MAX_AGE_S = 365 * 24 * 3600
SESSION_TOKEN_KEY = "har_token_id"
TOKEN_PREFIX = "har_"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
TOUCH_EVERY = timedelta(minutes=5)  # api_tokens.last_used_at is written at most this often
GUARDED_BLUEPRINTS = ("ui", "api", "auth")  # not /metrics (its own token), /healthz, /readyz, static files
AUTH_MODES = ("optional", "required")


@dataclass
class AccessError(UploadError):
    """A refusal with headers (401 with ``WWW-Authenticate``, 429 with ``Retry-After``)."""

    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Principal:
    """The client of a request."""

    owner: str  # new jobs get this owner
    owners: tuple[str, ...]  # the jobs it lists and manages
    token_name: str | None = None
    admin: bool = False
    via: str = "cookie"  # bearer | job_key | session | cookie
    anonymous_id: str | None = None
    job_ids: tuple[str, ...] = ()  # jobs it manages by their own key (``Authorization: Bearer hjk_…``)

    @property
    def authenticated(self) -> bool:
        return self.token_name is not None

    def owns(self, job) -> bool:
        return job.owner is not None and job.owner in self.owners

    def may_manage(self, job) -> bool:
        return self.admin or self.owns(job) or job.id in self.job_ids


def token_owner(name: str) -> str:
    return f"token:{name}"


def anonymous_owner(identity: str) -> str:
    return f"anon:{identity}"


def hash_token(token: str) -> str:
    """SHA-256 hex of a token: enough for random 256-bit tokens (no salt or slow hash needed)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


# ------------------------------------------------------------------------------------------ tokens
class TokenError(ValueError):
    pass


def create_token(db, name: str, admin: bool = False) -> tuple[ApiToken, str]:
    """A new token under ``name`` (committed by the caller): the row and the token, which is never stored."""
    if not NAME_RE.match(name or ""):
        raise TokenError("a token name is 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit")
    if db.scalar(select(ApiToken.id).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))) is not None:
        raise TokenError(f"there is already an active token named {name!r}: revoke it first, or choose another name")
    token = new_token()
    row = ApiToken(name=name, token_hash=hash_token(token), admin=bool(admin), created_at=utcnow(),
                   webhook_secret=new_webhook_secret())
    db.add(row)
    try:
        db.flush()
    except IntegrityError:  # created at the same moment by someone else (one active token per name)
        db.rollback()
        raise TokenError(f"there is already an active token named {name!r}: revoke it first, or choose another "
                         "name") from None
    return row, token


def find_token(db, token: str) -> ApiToken | None:
    """The active token row for ``token``, or None."""
    if not token or len(token) > 256:
        return None
    return db.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None)))


def revoke_token(db, name: str) -> int:
    """Revoke the active token named ``name``; the number revoked (0 or 1)."""
    rows = db.scalars(select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))).all()
    for row in rows:
        row.revoked_at = utcnow()
    db.flush()
    return len(rows)


def _touch(row: ApiToken) -> None:
    """Record the token's use (at most every few minutes), outside the request's transaction."""
    from har.jobs import as_utc

    now = utcnow()
    if row.last_used_at is not None and now - as_utc(row.last_used_at) < TOUCH_EVERY:
        return
    try:
        with current_app.extensions["har"]["engine"].begin() as conn:
            conn.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
    except Exception:  # noqa: BLE001 - bookkeeping only: never refuse a request for it
        log.warning("could not record the use of API token %r", row.name, exc_info=True)


# ------------------------------------------------------------------------------- who is asking
def _serializer() -> URLSafeSerializer:
    app = current_app
    keys = [*(app.config.get("SECRET_KEY_FALLBACKS") or []), app.secret_key]  # the last one signs
    return URLSafeSerializer(keys, salt="har.identity")


def identity_cookie_value(identity: str) -> str:
    """The signed cookie value for an anonymous identity (tests and tools give a client a known identity)."""
    return _serializer().dumps(identity)


def _anonymous_identity() -> str:
    """The browser's identity from its signed cookie, or a new one (sent back by :func:`_set_identity_cookie`)."""
    raw = request.cookies.get(IDENTITY_COOKIE)
    if raw:
        try:
            value = _serializer().loads(raw)
            if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{32}", value):
                g.har_identity = value
                return value
        except BadSignature:
            pass
    g.har_identity = uuid.uuid4().hex
    g.har_identity_new = True
    return g.har_identity


def _refuse_token(message: str) -> AccessError:
    return AccessError(401, "invalid_token", message,
                       headers={"WWW-Authenticate": 'Bearer realm="har", error="invalid_token"'})


def _resolve() -> Principal:
    from . import get_session

    header = request.headers.get("Authorization")
    scheme, _, value = (header or "").strip().partition(" ")
    if scheme.lower() == "bearer":  # other schemes are not ours (e.g. a reverse proxy's Basic login): no token
        if not value.strip():
            raise _refuse_token("Send the API token as the header 'Authorization: Bearer <token>'.")
        if value.strip().startswith(JOB_KEY_PREFIX):
            return _job_key_principal(value.strip())
        row = find_token(get_session(), value.strip())
        if row is None:
            raise _refuse_token("The API token is not valid: it is unknown or has been revoked.")
        _touch(row)
        owner = token_owner(row.name)
        return Principal(owner=owner, owners=(owner,), token_name=row.name, admin=bool(row.admin), via="bearer")
    anon = anonymous_owner(_anonymous_identity())
    token_id = session.get(SESSION_TOKEN_KEY)
    if token_id is not None:
        row = get_session().get(ApiToken, token_id) if isinstance(token_id, int) else None
        if row is not None and row.revoked_at is None:
            owner = token_owner(row.name)
            return Principal(owner=owner, owners=(owner, anon), token_name=row.name, admin=bool(row.admin),
                             via="session", anonymous_id=g.har_identity)
        session.pop(SESSION_TOKEN_KEY, None)
        flash("The API token this browser was using has been revoked: jobs you submit now are this browser's.",
              "error")
    return Principal(owner=anon, owners=(anon,), via="cookie", anonymous_id=g.har_identity)


def _job_key_principal(key: str) -> Principal:
    """A job's own key (returned once when it was submitted without a token): it manages that job only (delete,
    re-run, webhook log); jobs it submits belong to that job's submitter."""
    from har.db import Job

    from . import get_session

    job = get_session().scalar(select(Job).where(Job.job_key == key)) if len(key) <= 64 else None
    if job is None:
        raise _refuse_token("The job key is not valid: it is unknown, or its job was deleted.")
    owner = job.owner or f"job:{job.id}"
    return Principal(owner=owner, owners=(), via="job_key", job_ids=(job.id,))


def current_principal() -> Principal:
    """The client of the current request (resolved once per request)."""
    principal = g.get("har_principal")
    if principal is None:
        principal = g.har_principal = _resolve()
    return principal


def auth_required() -> bool:
    from . import get_settings

    return get_settings().auth.strip().lower() == "required"


def can_submit(principal: Principal | None = None) -> bool:
    return not auth_required() or (principal or current_principal()).authenticated


def require_submitter(principal: Principal) -> None:
    """401 when new jobs need a token (``HAR_AUTH=required``) and the client has none."""
    if not can_submit(principal):
        raise AccessError(401, "token_required",
                          "Submitting jobs needs an API token on this server: send 'Authorization: Bearer <token>' "
                          "(HAR_TOKEN for python -m har.client), or enter your token on the /token page in a browser.",
                          headers={"WWW-Authenticate": 'Bearer realm="har"'})


def require_manager(principal: Principal, job, action: str) -> None:
    """403 unless the client owns ``job`` (or holds an admin token); ``action``: "delete it", "run it again"."""
    if principal.may_manage(job):
        return
    whose = ("it was submitted before jobs had owners, so only an admin token can"
             if job.owner is None else "only whoever submitted it can")
    raise UploadError(403, "forbidden", f"This job is not yours: {whose} {action}. Anyone with its link can still "
                                        "view it and download its results.")


def error_response(exc: UploadError):
    """The answer for a refusal: JSON under /api, the error page elsewhere; with the refusal's headers."""
    from . import json_error, wants_json

    if wants_json():
        resp = json_error(exc.status, exc.error, exc.message)
    else:
        titles = {401: "API token needed" if exc.error == "token_required" else "Invalid API token",
                  403: "Refused" if exc.error == "cross_site_request" else "Not your job", 429: "Too many uploads"}
        resp = current_app.make_response((render_template("error.html", title=titles.get(exc.status, "Refused"),
                                                          message=exc.message, status=exc.status), exc.status))
    for name, value in getattr(exc, "headers", {}).items():
        resp.headers[name] = value
    return resp


# ------------------------------------------------------------------------------------------ hooks
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
CROSS_SITE_MESSAGE = ("This request was sent by another web site. Submit, re-run or delete jobs from this service's "
                      "own pages, or with an API token.")


def _refuse_cross_site():
    """A browser's cookie works for whatever page sends the request; a change (upload, re-run, delete, token) sent by
    another site (``Sec-Fetch-Site``: cross-site or same-site) is refused before anything else looks at it, so it
    neither acts for the browser's owner nor counts against the browser's upload quota. Requests with an API token
    (which a page cannot send for someone) and clients that do not send the header (curl, the CLI) are not
    concerned."""
    if request.method not in UNSAFE_METHODS or request.blueprint not in GUARDED_BLUEPRINTS:
        return None
    if request.headers.get("Sec-Fetch-Site", "").strip().lower() not in ("cross-site", "same-site"):
        return None
    if (request.headers.get("Authorization") or "").strip().lower().startswith("bearer "):
        return None
    return error_response(AccessError(403, "cross_site_request", CROSS_SITE_MESSAGE))


def _identify():
    if request.blueprint not in GUARDED_BLUEPRINTS:
        return None
    try:
        current_principal()
    except AccessError as exc:
        return error_response(exc)
    return None


def _set_identity_cookie(resp):
    identity = g.get("har_identity")
    if identity is None or g.get("har_principal") is None or g.har_principal.via in ("bearer", "job_key"):
        return resp
    # new identities always; known ones again on pages, so the year counts from the last visit
    if g.get("har_identity_new") or (request.blueprint == "ui" and resp.mimetype == "text/html"):
        resp.set_cookie(IDENTITY_COOKIE, identity_cookie_value(identity), max_age=IDENTITY_MAX_AGE_S,
                        secure=request.is_secure, httponly=True, samesite="Lax")
    return resp


def _template_context():
    principal = g.get("har_principal")
    return {"har_principal": principal, "auth_required": auth_required(),
            "can_submit": principal is None or can_submit(principal)}


def init_app(app: Flask) -> None:
    from flask.sessions import SecureCookieSessionInterface

    mode = app.extensions["har"]["settings"].auth.strip().lower()
    if mode not in AUTH_MODES:
        raise ValueError(f"HAR_AUTH must be one of {', '.join(AUTH_MODES)} (got {mode!r})")

    class SessionInterface(SecureCookieSessionInterface):
        """Flask's signed session cookie, Secure whenever the request came over https."""

        def get_cookie_secure(self, app) -> bool:
            return bool(app.config["SESSION_COOKIE_SECURE"]) or (has_request_context() and request.is_secure)

    app.session_interface = SessionInterface()
    if not app.config.get("SESSION_COOKIE_SAMESITE"):
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    # first of the before-request hooks: a bad token is refused before anything reads the request's body
    app.before_request_funcs.setdefault(None, []).insert(0, _identify)
    app.before_request_funcs[None].insert(0, _refuse_cross_site)
    app.after_request(_set_identity_cookie)
    app.context_processor(_template_context)
    app.register_blueprint(bp)
    app.cli.add_command(tokens_cli)


# ------------------------------------------------------------------------------------ /token page
bp = Blueprint("auth", __name__)


@bp.route("/token", methods=["GET", "POST"])
def token_page():
    """Use an API token in this browser: kept in the signed session; jobs submitted here then belong to it."""
    from . import get_session

    status = 200
    if request.method == "POST":
        row = find_token(get_session(), (request.form.get("token") or "").strip())
        if row is None:
            flash("That API token is not valid: it is unknown or has been revoked.", "error")
            status = 401
        else:
            session[SESSION_TOKEN_KEY] = row.id
            session.permanent = True
            flash(f"This browser now uses the API token “{row.name}”: jobs you submit belong to it.", "info")
            return redirect(url_for("ui.upload"), code=303)
    return render_template("token.html"), status


@bp.post("/token/forget")
def forget_token():
    session.pop(SESSION_TOKEN_KEY, None)
    flash("This browser no longer uses an API token.", "info")
    return redirect(url_for("auth.token_page"), code=303)


# ---------------------------------------------------------------------------- flask tokens ...
@click.group("tokens", help="API tokens: create, list, revoke.")
def tokens_cli():
    pass


def _db():
    return current_app.extensions["har"]["session_factory"]()


@tokens_cli.command("create", help="Create a token for NAME and print it (only once: it is not stored).")
@click.argument("name")
@click.option("--admin", is_flag=True, help="An admin token may delete and re-run every job, and list all jobs.")
def create_command(name: str, admin: bool):
    with _db() as db:
        try:
            row, token = create_token(db, name, admin=admin)
            db.commit()
        except TokenError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(token)
    click.echo(f"Created {'admin ' if row.admin else ''}token {name!r}. Store it now: it cannot be shown again. "
               f"Send it as 'Authorization: Bearer <token>' (HAR_TOKEN for python -m har.client).", err=True)


@tokens_cli.command("list", help="List tokens (never the tokens themselves).")
def list_command():
    with _db() as db:
        rows = db.scalars(select(ApiToken).order_by(ApiToken.name, ApiToken.created_at)).all()
    if not rows:
        click.echo("No tokens.")
        return

    def when(dt):
        return dt.strftime("%Y-%m-%d %H:%M") if dt else "-"

    table = [("NAME", "STATUS", "ADMIN", "CREATED", "LAST USED")]
    for r in rows:
        table.append((r.name, f"revoked {when(r.revoked_at)}" if r.revoked_at else "active",
                      "yes" if r.admin else "no", when(r.created_at), when(r.last_used_at)))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


@tokens_cli.command("webhook", help="Print the secret that signs the webhooks of NAME's jobs; --url sets the "
                                    "callback URL its jobs get when they name none (--no-url removes it).")
@click.argument("name")
@click.option("--url", "url", default=None, help="default callback URL of the token's jobs")
@click.option("--no-url", is_flag=True, help="no default callback URL")
@click.option("--new-secret", is_flag=True, help="replace the signing secret (receivers must use the new one)")
def webhook_command(name: str, url: str | None, no_url: bool, new_secret: bool):
    from har import webhooks

    from . import get_settings

    with _db() as db:
        row = db.scalar(select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None)))
        if row is None:
            raise click.ClickException(f"there is no active token named {name!r}")
        if url is not None:
            try:
                row.callback_url = webhooks.check_url(url, allow_private=get_settings().webhook_allow_private)
            except webhooks.UnsafeURL as exc:
                raise click.ClickException(str(exc)) from None
        if no_url:
            row.callback_url = None
        if new_secret or not row.webhook_secret:
            row.webhook_secret = new_webhook_secret()
        db.commit()
        click.echo(row.webhook_secret)
        click.echo(f"The webhooks of the jobs of token {name!r} are signed with this secret (Har-Signature); default "
                   f"callback URL: {row.callback_url or 'none'}.", err=True)


@tokens_cli.command("revoke", help="Revoke the token of NAME: it is refused (401) from now on.")
@click.argument("name")
def revoke_command(name: str):
    with _db() as db:
        n = revoke_token(db, name)
        db.commit()
    if not n:
        raise click.ClickException(f"there is no active token named {name!r}")
    click.echo(f"Revoked token {name!r}.")
