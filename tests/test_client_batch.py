"""The client's batch submission (several files, folders, ``--jobs``, ``--wait``, ``--summary``, ``--callback-url``)
against the test stack served over real HTTP with real workers; the single file ``python har/client.py`` copied
anywhere; and the client installed from ``pyproject.toml`` as the ``har`` command."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.test_client import ROOT, run_client, server  # noqa: F401 - the served stack
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def clips(tmp_path_factory, people_video) -> Path:
    """A folder: two clips, one file that is not a video, a note (not a video by its name), and a subfolder with a
    third clip."""
    d = tmp_path_factory.mktemp("batch")
    shutil.copy(people_video, d / "a.mp4")
    shutil.copy(people_video, d / "b.mp4")
    (d / "broken.mp4").write_bytes(b"this is not a video" * 100)
    (d / "notes.txt").write_text("not a video")
    (d / "more").mkdir()
    shutil.copy(people_video, d / "more" / "c.mp4")
    return d


def table(stdout: str) -> dict[str, list[str]]:
    """The client's table: file -> [job id, state, action...]."""
    lines = stdout.strip().splitlines()
    assert lines[0].split() == ["FILE", "JOB", "ID", "STATE", "ACTION"], stdout
    return {line.split()[0]: line.split()[1:] for line in lines[1:-1]}


def test_a_folder_recursive_with_jobs_wait_summary_and_webhooks(server, clips, tmp_path):  # noqa: F811
    with Receiver() as receiver:
        res = run_client(server, "submit", clips, "--recursive", "--jobs", "3", "--wait", "--summary",
                         tmp_path / "summary.csv", "--callback-url", receiver.url())
        rows = table(res.stdout)
        assert set(rows) == {str(clips / n) for n in ("a.mp4", "b.mp4", "broken.mp4", "more/c.mp4")}  # no .txt
        for name in ("a.mp4", "b.mp4", "more/c.mp4"):
            job_id, state, action = rows[str(clips / name)][:3]
            assert len(job_id) == 36 and state == "done" and action in (
                "JUMPING", "JUMPING_JACKS", "BOXING", "WAVING_2HANDS", "WAVING_1HAND", "CLAPPING_HANDS", "uncertain")
        assert rows[str(clips / "broken.mp4")][:2] == ["-", "refused"]
        assert res.stdout.strip().splitlines()[-1] == "4 files: 3 submitted, 3 done, 1 not submitted"
        assert res.returncode == 4, res.stderr  # the refused upload (HTTP 422) is the first that did not go well
        # one progress line per file and change (stderr is not a terminal here)
        assert "broken.mp4  refused:" in res.stderr and res.stderr.count("submitted: job ") == 3
        assert res.stderr.count("done: ") == 3
        with open(tmp_path / "summary.csv", newline="") as f:
            summary = {r["file"]: r for r in csv.DictReader(f)}
        assert summary[str(clips / "a.mp4")]["state"] == "done" and summary[str(clips / "a.mp4")]["action"]
        assert summary[str(clips / "broken.mp4")]["state"] == "refused"
        assert "cannot be read as a video" in summary[str(clips / "broken.mp4")]["error"]
        assert summary[str(clips / "a.mp4")]["report_json"].endswith("/report.json")
        # the webhook of every submitted job
        job_ids = {rows[str(clips / n)][0] for n in ("a.mp4", "b.mp4", "more/c.mp4")}
        wait_for(lambda: {r.json["job"]["id"] for r in receiver.received if r.json["event"] == "job.done"} == job_ids,
                 60, "the three job.done webhooks", interval=0.1)


def test_several_files_without_wait_and_a_json_summary(server, clips, tmp_path):  # noqa: F811
    res = run_client(server, "submit", clips / "a.mp4", clips, "--summary", "-", "--jobs", "2")
    assert res.returncode == 4  # broken.mp4
    body = res.stdout[res.stdout.index("\n[") + 1:]
    doc = json.loads(body)
    assert [Path(r["file"]).name for r in doc] == ["a.mp4", "b.mp4", "broken.mp4"]  # a.mp4 once; no subfolder
    assert doc[0]["state"] == "queued" and len(doc[0]["job_id"]) == 36 and doc[0]["action"] is None
    assert doc[2]["state"] == "refused" and doc[2]["job_id"] is None
    assert "job_key" not in doc[0]  # the summary is no place for secrets


def test_batch_usage_errors(server, clips, tmp_path):  # noqa: F811
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run_client(server, "submit", empty)
    assert res.returncode == 2 and "no videos" in res.stderr and "--recursive" in res.stderr
    res = run_client(server, "submit", clips / "a.mp4", clips / "b.mp4", "--out", tmp_path / "r.json")
    assert res.returncode == 2 and "--out is for one video" in res.stderr
    res = run_client(server, "submit", clips / "a.mp4", "--jobs", "0")
    assert res.returncode == 2 and "--jobs" in res.stderr


def test_one_file_with_a_callback_url_prints_its_job_key(server, clips):  # noqa: F811
    with Receiver() as receiver:
        res = run_client(server, "submit", clips / "a.mp4", "--callback-url", receiver.url(), "--wait")
        assert res.returncode == 0, res.stderr
        job_id = res.stdout.splitlines()[0]
        key = next(line.rsplit(" ", 1)[1] for line in res.stderr.splitlines() if line.startswith("job key"))
        wait_for(lambda: receiver.events(), 60, "the webhook", interval=0.1)
        from har.webhooks import verify_signature

        got = receiver.received[0]
        assert got.json["job"]["id"] == job_id and verify_signature(key, got.body, got.headers["Har-Signature"])


def test_the_single_file_client_runs_anywhere(server, clips, tmp_path):  # noqa: F811
    """``python har/client.py``: the file alone, copied out of the repository, with nothing on its path."""
    copy = tmp_path / "elsewhere" / "client.py"
    copy.parent.mkdir()
    shutil.copy(ROOT / "har" / "client.py", copy)
    env = {"PATH": os.environ.get("PATH", ""), "HAR_URL": server.url}
    res = subprocess.run([sys.executable, "-I", str(copy), "submit", clips / "a.mp4", clips / "b.mp4", "-q"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert len(table(res.stdout)) == 2
    res = subprocess.run([sys.executable, str(ROOT / "har" / "client.py"), "--help"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "usage: python -m har.client" in res.stdout


def test_the_client_installs_from_pyproject_as_the_har_command(tmp_path, server, clips):  # noqa: F811
    """``pip install ./`` (here into a folder, offline, with this environment's setuptools): the ``har`` command,
    which needs nothing but the standard library."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "har", src / "har", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "installed"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps",
                          "--no-index", "--target", str(target), str(src)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    metadata = next(target.glob("har-*.dist-info")) / "METADATA"
    assert "Provides-Extra: service" in metadata.read_text()
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(target), "HAR_URL": server.url}
    res = subprocess.run([str(target / "bin" / "har"), "--help"], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("usage: har "), res.stdout + res.stderr
    res = subprocess.run([str(target / "bin" / "har"), "submit", clips / "a.mp4", "--wait", "-q"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "Result:" in res.stdout


def test_pytest_and_ruff_read_their_settings_from_pyproject():
    import tomllib

    assert not (ROOT / "pytest.ini").exists() and not (ROOT / "ruff.toml").exists()
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert conf["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]
    assert conf["tool"]["ruff"]["line-length"] == 140
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "--show-settings", "har/client.py"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and f'Settings path: "{ROOT / "pyproject.toml"}"' in res.stdout
    res = subprocess.run([sys.executable, "-m", "pytest", "--co", "tests/test_plots.py"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "configfile: pyproject.toml" in res.stdout, res.stdout


def test_batch_progress_keeps_one_line_per_file_on_a_terminal():
    import io

    from har.client import BatchProgress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    bar = BatchProgress(["a.mp4", "b.mp4"], stream=out)
    bar.set(0, "uploading", key="upload", force=True)
    bar.set(1, "submitted: job 1", key="submitted", force=True)
    bar.set(0, "done: BOXING 99 %", key="end", force=True)
    frames = out.getvalue().split("\x1b[2F")  # each redraw moves back up over the two lines it drew
    assert len(frames) == 3
    assert frames[-1] == "\x1b[2Ka.mp4  done: BOXING 99 %\n\x1b[2Kb.mp4  submitted: job 1\n"
