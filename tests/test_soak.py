"""The chaos soak (bench/soak.py) in a few jobs, on the real parts: PostgreSQL, Redis with its append-only file, moto's
S3 server behind the soak's TCP proxy, two gunicorn web processes and the four workers, each a process of its own.
Every fault happens once (a worker process SIGKILLed, Redis SIGKILLed, PostgreSQL stopped with ``-m immediate``, the
storage unreachable, a web process SIGKILLed; 3 s outages instead of 10) while two clients upload with the command-line
client, re-run and delete; then the soak's own checks must all pass (every job done exactly once, the bucket and the
rows agree, deleted jobs leave nothing, nothing stuck, 503 not 500 while the database is down)."""
from __future__ import annotations

import glob
import importlib.util
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TEST_IMGSZ


def test_short_soak_every_fault_once_all_checks_pass(tmp_path):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        pytest.skip("PostgreSQL server binaries are not installed")
    for module in ("moto.server", "boto3", "gunicorn"):
        if importlib.util.find_spec(module.split(".")[0]) is None:
            pytest.skip(f"{module} is not installed")
    from tests.media import make_people_video

    clips = tmp_path / "clips"
    clips.mkdir()
    make_people_video(clips / "people.mp4", seconds=1.5, fps=15.0, size=(320, 180))
    make_people_video(clips / "bus.mp4", seconds=1.5, fps=15.0, size=(320, 180), image="bus.jpg")
    report = tmp_path / "soak.md"
    cmd = [sys.executable, str(ROOT / "bench" / "soak.py"), "--jobs", "4", "--clients", "2", "--reruns", "1",
           "--deletes", "1", "--clips", str(clips), "--clip-count", "2", "--outage-s", "3", "--kill-every", "5", "8",
           "--fault-points", "redis=0.25,postgres=0.5,storage=0.75,web=1.0", "--manage-every-s", "1",
           "--pose-imgsz", TEST_IMGSZ, "--timeout", "400", "--markdown", str(report)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the soak stops every part it started
        out, err = proc.communicate(timeout=120)
    text = report.read_text() if report.exists() else ""
    assert proc.returncode == 0, f"{out[-6000:]}\n{err[-4000:]}"
    assert "Overall: PASS" in text
    for fault in ("SIGKILL redis-server", "pg_ctl stop -m immediate", "S3 proxy refusing", "gunicorn master",
                  "worker's"):
        assert fault in text, fault
    assert "database_unavailable" in text and "→ 500" not in text
