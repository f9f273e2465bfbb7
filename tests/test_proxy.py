"""The reverse proxy's configuration (har/proxy.py) and its place in docker-compose.yml.

What it does in front of the running service (slow uploads, the per-address limit, the upload limit) is tested
against the real runner in tests/test_runner.py; here: the nginx configurations it writes are accepted by nginx
(the runner's whole file, and the http part the official image's nginx.conf includes), the proxy's own answers when
the web app is down, and the compose layout (only the proxy published, both reading the same upload limit).
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from har.config import load_settings
from har.proxy import body_limit, nginx_time, render_http, render_main
from tests.conftest import ROOT, free_port, wait_for

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/sbin")
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (scripts/test.sh installs it)")


def test_durations_and_sizes_in_nginx_units():
    assert nginx_time(30) == "30s" and nginx_time(2.5) == "2500ms" and nginx_time(0) == "1ms"
    assert body_limit(load_settings(max_upload_mb=500)) == "501m"


def test_rendered_settings():
    settings = load_settings(proxy_header_timeout_s=7, proxy_body_timeout_s=12.5, proxy_conn_per_ip=9, max_upload_mb=40)
    text = render_http(settings, upstreams=["web:8000"], listen="8000")
    for line in ("client_header_timeout 7s;", "client_body_timeout 12500ms;", "limit_conn har_addr 9;",
                 "client_max_body_size 41m;", "server web:8000 max_fails=0;", "listen 8000;",
                 "proxy_request_buffering on;", "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"):
        assert line in text, line
    assert "client_body_temp_path" not in text  # the image's own directory (a volume in compose)
    spooled = render_http(settings, upstreams=["unix:/tmp/x.sock"], listen="127.0.0.1:8000", spool_dir="/srv/spool")
    assert "client_body_temp_path /srv/spool/body 1 2;" in spooled


def _nginx_test(conf: Path, prefix: Path) -> subprocess.CompletedProcess:
    return subprocess.run([NGINX, "-p", str(prefix), "-c", str(conf), "-t"], capture_output=True, text=True)


@needs_nginx
def test_the_compose_http_part_is_valid_inside_the_images_nginx_conf(tmp_path):
    """The file proxy-config writes (``python -m har.proxy``), included in http {} as the official image's nginx.conf
    includes conf.d/*.conf."""
    conf_d = tmp_path / "conf.d"
    port = free_port()
    out = subprocess.run([sys.executable, "-m", "har.proxy", "--upstream", "127.0.0.1:9", "--listen", f"127.0.0.1:{port}",
                          "--out", str(conf_d / "har.conf")], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    spool = tmp_path / "cache"
    main = tmp_path / "nginx.conf"
    temp = "\n".join(f"    {kind}_temp_path {spool / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                             "scgi"))
    main.write_text(f"pid {tmp_path / 'nginx.pid'};\nerror_log stderr;\nevents {{ worker_connections 64; }}\n"
                    f"http {{\n{temp}\n    default_type application/octet-stream;\n    keepalive_timeout 65;\n"
                    f"    include {conf_d}/*.conf;\n}}\n")
    spool.mkdir()
    result = _nginx_test(main, tmp_path)
    assert result.returncode == 0, result.stderr


@needs_nginx
def test_the_proxy_answers_for_a_web_app_that_is_down(tmp_path):
    """No web app behind it (it is starting or restarting): 503 with Retry-After, JSON under /api, HTML elsewhere."""
    port = free_port()
    spool = tmp_path / "spool"
    spool.mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_main(load_settings(), upstreams=[f"unix:{tmp_path / 'absent.sock'}"],
                                listen=f"127.0.0.1:{port}", spool_dir=spool, pid_file=tmp_path / "nginx.pid",
                                user="root" if os.geteuid() == 0 else None))
    proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        def get(path):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                return resp.status, resp.getheader("Content-Type"), resp.getheader("Retry-After"), resp.read()
            except OSError:
                return None
            finally:
                conn.close()

        status, ctype, retry, body = wait_for(lambda: get("/api/health"), 15, "nginx to listen")
        assert (status, ctype, retry) == (503, "application/json", "5"), body
        assert json.loads(body)["error"] == "unavailable"
        status, ctype, retry, body = get("/")
        assert (status, ctype, retry) == (503, "text/html", "5") and b"<h1>Service unavailable</h1>" in body
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err


def test_compose_publishes_only_the_proxy():
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for proxy, config, web, upstream in (("proxy", "proxy-config", "web", "web:8000"),
                                         ("proxy-s3", "proxy-config-s3", "web-s3", "web-s3:8000")):
        assert "ports" not in services[web], f"{web} is published directly"
        assert services[proxy]["image"].startswith("nginx:")
        assert services[proxy]["ports"][0].endswith(":8000")
        assert services[proxy]["depends_on"][config] == {"condition": "service_completed_successfully"}
        command = services[config]["command"]
        assert command[:3] == ["python", "-m", "har.proxy"] and command[command.index("--upstream") + 1] == upstream
        conf_volume = services[config]["volumes"][0].split(":")[0]
        assert f"{conf_volume}:/etc/nginx/conf.d:ro" in services[proxy]["volumes"]
        # the proxy's upload limit is the web app's: both from the same variable
        assert services[config]["environment"]["HAR_MAX_UPLOAD_MB"] == services[web]["environment"]["HAR_MAX_UPLOAD_MB"]
        assert services[web]["environment"]["HAR_TRUSTED_PROXIES"] == "${HAR_TRUSTED_PROXIES:-1}"
    published = [name for name, svc in services.items() if svc.get("ports") and not svc.get("profiles")]
    assert published == ["proxy"], published
