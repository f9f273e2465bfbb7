"""The runtime (models CLI, web app, workers) needs no torch: docs/contracts.md says the runtime uses numpy,
OpenCV and onnxruntime only; torch is for training. Each check runs the project's python in a subprocess
where torch, torchvision, ultralytics and tensorflow cannot be imported (a ``sitecustomize`` first on
PYTHONPATH puts a finder in front of ``sys.meta_path`` that refuses them), and proves the blocker was
active in that very process, so a test cannot pass just because the blocker was never loaded."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.media import make_people_video

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("torch", "torchvision", "ultralytics", "tensorflow")
RESULT_KEYS = {"status", "classes", "models", "video", "params", "persons", "short_tracks"}
PERSON_KEYS = {"track_id", "start_s", "end_s", "frames", "label", "confidence", "probabilities", "segments",
               "windows"}

pytestmark = pytest.mark.timeout(300)

SITECUSTOMIZE = '''
"""Test helper: the listed top-level packages cannot be imported in this interpreter."""
import os
import sys

_BLOCKED = frozenset({blocked!r})
_LOG = os.environ.get("HAR_BLOCKER_LOG")


def _note(line):
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as f:
            f.write(line + "\\n")


class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in _BLOCKED:
            _note(f"blocked {{os.getpid()}} {{name}}")
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: the runtime must not need it)",
                                      name=name)
        return None


sys.meta_path.insert(0, _Blocker())
_note(f"loaded {{os.getpid()}}")
'''


@pytest.fixture(scope="module")
def blocked_env(tmp_path_factory):
    """(environment for a subprocess with the blocker, path of the blocker's log)."""
    d = tmp_path_factory.mktemp("no-torch")
    (d / "sitecustomize.py").write_text(SITECUSTOMIZE.format(blocked=sorted(BLOCKED)), encoding="utf-8")
    log = d / "blocker.log"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(d), str(ROOT)] + ([os.environ["PYTHONPATH"]]
                                                               if os.environ.get("PYTHONPATH") else []))
    env["HAR_BLOCKER_LOG"] = str(log)
    env.setdefault("OMP_NUM_THREADS", "2")
    return env, log


def run_blocked(env, *args, timeout=240) -> tuple[int, str, str, int]:
    """Run ``python *args`` with the blocker → (exit code, stdout, stderr, pid)."""
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"timed out: {args}\n{err[-3000:]}")
    return proc.returncode, out, err, proc.pid


def log_lines(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def test_blocker_is_active(blocked_env):
    env, log = blocked_env
    for name in BLOCKED:
        code = textwrap.dedent(f"""
            try:
                import {name}
            except ImportError as exc:
                assert "blocked" in str(exc), exc
                print("refused")
            else:
                print("imported", {name}.__file__)
        """)
        rc, out, err, pid = run_blocked(env, "-c", code, timeout=60)
        assert rc == 0 and out.strip() == "refused", (name, out, err)
        assert f"loaded {pid}" in log_lines(log) and f"blocked {pid} {name}" in log_lines(log)


def test_models_cli_runs_without_torch(blocked_env, tmp_path):
    env, log = blocked_env
    video = make_people_video(tmp_path / "people.mp4", seconds=2.5, fps=15.0, size=(480, 270))
    out = tmp_path / "result.json"
    rc, _stdout, stderr, pid = run_blocked(env, "-m", "models", "run", str(video), "--imgsz", "320",
                                           "--out", str(out), "--quiet")
    assert rc == 0, stderr[-3000:]
    assert f"loaded {pid}" in log_lines(log), "the blocker was not loaded in the CLI's process"
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert RESULT_KEYS <= set(doc), sorted(doc)
    assert doc["status"] == "ok" and doc["persons"], doc["status"]  # the pose and action models really ran
    for person in doc["persons"]:
        assert PERSON_KEYS <= set(person), sorted(person)
    assert {"pose", "action"} <= set(doc["models"])


def test_web_and_workers_import_and_load_models_without_torch(blocked_env, tmp_path):
    env, log = blocked_env
    data = tmp_path / "data"
    code = textwrap.dedent(f"""
        import json, sys
        from har.config import load_settings
        settings = load_settings(data_dir={str(data)!r}, storage_dir={str(data / "storage")!r},
                                 database_url={f"sqlite:///{data / 'har.sqlite3'}"!r},
                                 redis_url="redis://127.0.0.1:1/0", secret_key="test", pose_imgsz=320)
        from web import create_app
        app = create_app(settings, TESTING=True)
        import worker.tasks.pose, worker.tasks.classify, worker.tasks.report, worker.tasks.video, worker.annotate
        from worker import engines
        engines.warm_up(settings)  # loads the ONNX pose and action models the workers use
        print(json.dumps({{
            "app": app.name,
            "pose_loaded": bool(engines._pose),
            "classifier_loaded": engines._classifier is not None,
            "loaded": sorted(m for m in sys.modules if m.partition(".")[0] in {sorted(BLOCKED)!r}),
        }}))
    """)
    rc, out, err, pid = run_blocked(env, "-c", code, timeout=180)
    assert rc == 0, err[-3000:]
    assert f"loaded {pid}" in log_lines(log), "the blocker was not loaded in this process"
    facts = json.loads(out.strip().splitlines()[-1])
    assert facts["pose_loaded"] and facts["classifier_loaded"], (facts, err[-3000:])
    assert facts["loaded"] == [] and facts["app"] == "web"
