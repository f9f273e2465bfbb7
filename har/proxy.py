"""The reverse proxy (nginx) in front of the web app: its configuration, written from the settings.

gunicorn gives each request a thread for as long as the request lasts, its body included: a few clients that send
an upload at 10 bytes a second hold every thread, and the web app stops answering everybody. nginx reads requests
with an event loop (a waiting client costs it a few kilobytes, no thread) and hands a request to the web app only
once it has all of it: the body is spooled to a file (``client_body_temp_path``) first, so a slow upload never holds
a gunicorn thread, and a large one streams from that file. Around that:

* the whole request line and headers within ``HAR_PROXY_HEADER_TIMEOUT_S``, else the connection is closed;
* a request body that stops arriving for ``HAR_PROXY_BODY_TIMEOUT_S`` is cut off (nginx closes the connection and
  removes what it had spooled: the web app never sees the request, nothing is stored);
* at most ``HAR_PROXY_CONN_PER_IP`` requests in progress per client address (429 JSON beyond);
* bodies larger than ``HAR_MAX_UPLOAD_MB`` + 1 MB are refused with 413 from their declared length, before they are
  read (the web app's own check, with the same JSON answer, refuses what is over ``HAR_MAX_UPLOAD_MB`` below that);
* ``X-Forwarded-For`` (the client's address appended to what it sent) and ``X-Forwarded-Proto`` (likewise), which
  the web app trusts with ``HAR_TRUSTED_PROXIES=1`` (web/security.py: the last entry of each, the one nginx added);
* answers of its own (413, 429, 502/504 while the web app restarts) in the app's shape: JSON
  ``{"error", "message"}`` under ``/api``, a short HTML page elsewhere;
* responses are buffered too (``proxy_temp_path``), so a client that downloads slowly holds no thread either.

Used by ``scripts/run_local.py`` (:func:`render_main`: a whole nginx.conf, nginx as one of its supervised parts) and by
docker-compose.yml (``python -m har.proxy --upstream web:8000 --listen 8000 --out …``: the ``http`` part for the
official nginx image's ``conf.d``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

MB = 1024 * 1024
SLACK_MB = 1  # nginx's limit is above the app's, so the app's own 413 (same JSON) answers what is just over it


def nginx_time(seconds: float) -> str:
    """A duration as nginx reads it: whole seconds as ``"30s"``, anything else in milliseconds."""
    ms = max(1, int(round(seconds * 1000)))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def body_limit(settings) -> str:
    """``client_max_body_size``: the upload limit plus the slack, in megabytes."""
    return f"{max(0, settings.max_upload_mb) + SLACK_MB}m"


def _json_return(status: int, error: str, message: str, **extra) -> str:
    body = json.dumps({"error": error, "message": message, **extra}, separators=(", ", ": "))
    return "return %d '%s\\n';" % (status, body.replace("\\", "\\\\").replace("'", "\\'"))


def _html_return(status: int, title: str, message: str) -> str:
    page = (f"<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>{title}</title>"
            f"<h1>{title}</h1><p>{message}</p></html>")
    return "return %d '%s\\n';" % (status, page.replace("\\", "\\\\").replace("'", "\\'"))


def render_http(settings, *, upstreams: list[str], listen: str, spool_dir: str | Path | None = None,
                access_log: str | None = "/dev/stdout") -> str:
    """The ``http``-level part: the address zone, the upstream (``unix:/path`` or ``host:port`` entries) and the
    server listening on ``listen`` (``127.0.0.1:8000``, ``8000``, ...). ``spool_dir``: where request bodies and
    buffered responses are written (None: nginx's compiled-in directories). ``access_log``: where the requests that
    nginx answers itself (refused, cut off, the app unreachable) are logged; the app logs the others."""
    limit_mb = settings.max_upload_mb
    too_large = f"The file is too large: uploads are limited to {limit_mb} MB."
    busy = ("Too many requests from your address are in progress at once. Wait for them to finish, then try "
            "again.")
    down = "The web app is not answering right now (it is starting or restarting). Try again in a few seconds."
    lines = [
        "# Written from the HAR_* settings by har/proxy.py; edits are overwritten at the next start.",
        "limit_conn_zone $binary_remote_addr zone=har_addr:10m;",
        "limit_conn_status 429;",
        "limit_conn_log_level warn;",
        "",
        "# X-Forwarded-Proto is appended to like X-Forwarded-For: with HAR_TRUSTED_PROXIES=1 the app reads the last",
        "# entry (ours); behind one more proxy (HAR_TRUSTED_PROXIES=2) the one before it.",
        "map $http_x_forwarded_proto $har_forwarded_proto {",
        "    \"\" $scheme;",
        "    default \"$http_x_forwarded_proto, $scheme\";",
        "}",
        "# only what nginx answered itself is logged here (the web app logs every request that reaches it)",
        "map $upstream_status $har_proxy_answered {",
        "    \"\" 1;",
        "    ~50[24] 1;",
        "    default 0;",
        "}",
        "log_format har_proxy '$remote_addr [$time_local] \"$request\" $status $body_bytes_sent '",
        "                     '${request_time}s \"$http_user_agent\"';",
        "",
        "upstream har_web {",
        *[f"    server {u} max_fails=0;" for u in upstreams],
        "}",
        "",
        "server {",
        f"    listen {listen};",
        "    server_tokens off;",
        (f"    access_log {access_log} har_proxy if=$har_proxy_answered;" if access_log else "    access_log off;"),
        "",
        "    # slow and hostile clients: the headers within a deadline, a body that keeps coming, a few requests in",
        "    # progress per address; a request reaches the web app only once nginx has all of it",
        f"    client_header_timeout {nginx_time(settings.proxy_header_timeout_s)};",
        f"    client_body_timeout {nginx_time(settings.proxy_body_timeout_s)};",
        "    send_timeout 60s;",
        "    keepalive_timeout 30s;",
        "    reset_timedout_connection on;",
        f"    limit_conn har_addr {max(1, settings.proxy_conn_per_ip)};",
        f"    client_max_body_size {body_limit(settings)};",
        "    client_body_buffer_size 128k;",
    ]
    if spool_dir is not None:
        spool = Path(spool_dir)
        lines += [
            f"    client_body_temp_path {spool / 'body'} 1 2;",
            f"    proxy_temp_path {spool / 'proxy'} 1 2;",
        ]
    lines += [
        "",
        "    proxy_http_version 1.1;",
        "    proxy_request_buffering on;",
        "    proxy_buffering on;",
        "    proxy_set_header Connection \"\";",
        "    proxy_set_header Host $http_host;",
        "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "    proxy_set_header X-Forwarded-Proto $har_forwarded_proto;",
        "    proxy_connect_timeout 5s;",
        "    proxy_send_timeout 300s;  # gunicorn's --timeout",
        "    proxy_read_timeout 300s;",
        "    proxy_next_upstream error timeout;",
        "    proxy_next_upstream_tries 2;",
        "",
        "    location = /api {",
        "        proxy_pass http://har_web;",
        "        error_page 413 @too_large_json;",
        "        error_page 429 @busy_json;",
        "        error_page 502 504 =503 @down_json;",
        "    }",
        "    location /api/ {",
        "        proxy_pass http://har_web;",
        "        error_page 413 @too_large_json;",
        "        error_page 429 @busy_json;",
        "        error_page 502 504 =503 @down_json;",
        "    }",
        "    location / {",
        "        proxy_pass http://har_web;",
        "        error_page 413 @too_large_html;",
        "        error_page 429 @busy_html;",
        "        error_page 502 504 =503 @down_html;",
        "    }",
        "",
        "    location @too_large_json {",
        "        default_type application/json;",
        f"        {_json_return(413, 'file_too_large', too_large, max_upload_mb=limit_mb)}",
        "    }",
        "    location @too_large_html {",
        "        default_type text/html;",
        f"        {_html_return(413, 'File too large', too_large)}",
        "    }",
        "    location @busy_json {",
        "        default_type application/json;",
        "        add_header Retry-After 5 always;",
        f"        {_json_return(429, 'too_many_connections', busy)}",
        "    }",
        "    location @busy_html {",
        "        default_type text/html;",
        "        add_header Retry-After 5 always;",
        f"        {_html_return(429, 'Too many requests', busy)}",
        "    }",
        "    location @down_json {",
        "        default_type application/json;",
        "        add_header Retry-After 5 always;",
        f"        {_json_return(503, 'unavailable', down)}",
        "    }",
        "    location @down_html {",
        "        default_type text/html;",
        "        add_header Retry-After 5 always;",
        f"        {_html_return(503, 'Service unavailable', down)}",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def render_main(settings, *, upstreams: list[str], listen: str, spool_dir: str | Path, pid_file: str | Path,
                access_log: str | None = "/dev/stdout", user: str | None = None,
                worker_connections: int = 1024) -> str:
    """A whole nginx.conf for a foreground nginx that writes nothing outside ``spool_dir`` and ``pid_file``
    (scripts/run_local.py). ``user``: the account of the worker processes when nginx is started as root."""
    spool = Path(spool_dir)
    http = render_http(settings, upstreams=upstreams, listen=listen, spool_dir=spool, access_log=access_log)
    return "\n".join([
        "# Written by scripts/run_local.py from the HAR_* settings (har/proxy.py); rewritten at every start.",
        "daemon off;",
        "master_process on;",
        "worker_processes 1;",
        *([f"user {user};"] if user else []),
        f"pid {pid_file};",
        "error_log stderr warn;",
        "",
        "events {",
        f"    worker_connections {worker_connections};",
        "}",
        "",
        "http {",
        # the other modules' temporary directories: nginx creates them at start even when unused
        f"    fastcgi_temp_path {spool / 'fastcgi'};",
        f"    uwsgi_temp_path {spool / 'uwsgi'};",
        f"    scgi_temp_path {spool / 'scgi'};",
        "",
        *["    " + line if line else "" for line in http.rstrip("\n").split("\n")],
        "}",
    ]) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Write the reverse proxy's (nginx's) http-level configuration from the "
                                             "HAR_* settings (docker-compose.yml's proxy-config service).")
    ap.add_argument("--upstream", action="append", required=True,
                    help="the web app: host:port or unix:/path (repeat for several)")
    ap.add_argument("--listen", default="8000", help="nginx's listen address (default 8000)")
    ap.add_argument("--spool-dir", default=None, help="request bodies and buffered responses (default: nginx's)")
    ap.add_argument("--out", default="-", help="file to write (default: stdout)")
    args = ap.parse_args(argv)

    from har.config import load_settings

    text = render_http(load_settings(), upstreams=args.upstream, listen=args.listen, spool_dir=args.spool_dir)
    if args.out == "-":
        sys.stdout.write(text)
    else:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}")
        tmp.write_text(text)
        tmp.replace(out)
        print(f"proxy configuration written to {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
