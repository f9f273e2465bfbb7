"""Security headers on every response, and the proxies trusted for the client's address and scheme.

The pages load their scripts and styles from /static only: no inline ``<script>``, no ``on*=`` attributes, no
inline ``<style>`` elements (``style-src-elem 'self'``). Style *attributes* are allowed (``style-src
'unsafe-inline'``, which browsers with ``style-src-elem`` apply to attributes only): the timeline, swatches and
progress bars are positioned and coloured per job by the templates. The SVG plots (har/plots.py) are inline
elements with presentation attributes only.

The HTML report (``/api/jobs/<id>/report.html``) is a standalone file whose styles are one inline ``<style>``
element: it gets a policy of its own, with no scripts, no network, and a sandbox (a unique origin).
"""
from __future__ import annotations

from flask import Flask, request

CSP = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "style-src-elem 'self'",
    "img-src 'self' data:",
    "media-src 'self'",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
REPORT_CSP = "; ".join((
    "default-src 'none'",
    "style-src 'unsafe-inline'",
    "img-src data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
    "sandbox",
))
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # job URLs (shareable, unguessable) never leave in a Referer
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}
HSTS = "max-age=31536000"


def _headers(resp):
    csp = REPORT_CSP if request.endpoint == "api.report" and resp.mimetype == "text/html" else CSP
    resp.headers.setdefault("Content-Security-Policy", csp)
    for name, value in HEADERS.items():
        resp.headers.setdefault(name, value)
    if request.is_secure:
        resp.headers.setdefault("Strict-Transport-Security", HSTS)
    return resp


def init_app(app: Flask) -> None:
    """Security headers on every response; ``HAR_TRUSTED_PROXIES`` reverse proxies' X-Forwarded-For/-Proto."""
    hops = app.extensions["har"]["settings"].trusted_proxies
    if hops > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    app.after_request(_headers)
