"""The limits benchmark's own pieces on small inputs: the crowd mosaic, the largest valid upload, and the memory
sampler over a process tree."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import limits  # noqa: E402
from models.video import probe_video  # noqa: E402
from tests.media import make_people_video  # noqa: E402

pytestmark = pytest.mark.skipif(limits.shutil.which("ffmpeg") is None, reason="needs ffmpeg")


def test_mosaic_shows_clips_coming_and_going_for_the_length_asked(tmp_path):
    clips = tmp_path / "clips"
    for label, seconds in (("boxing", 1.0), ("clapping", 2.5)):
        (clips / label).mkdir(parents=True)
        make_people_video(clips / label / f"{label}.mp4", seconds=seconds, fps=10, size=(160, 90))
    out = tmp_path / "mosaic.mp4"
    made = limits.make_mosaic(clips, out, 12.0, (2, 1), (320, 120), 10, 2, seed=3)
    info = probe_video(out)
    assert (info.width, info.height) == (320, 120)
    assert abs(info.duration_s - 12.0) < 0.2
    assert made["clips"] == 2 and made["tiles"] == 2
    # every tile starts with a pause and shows 4-10 s clips between pauses of 1-5 s: at least one clip each
    assert made["appearances"] >= 2
    assert not (tmp_path / "mosaic-parts").exists()  # the pieces are removed
    assert limits.make_mosaic(clips, out, 12.0, (2, 1), (320, 120), 10, 2, seed=3) == made  # made once


def test_largest_upload_is_a_valid_video_just_under_the_limit(tmp_path):
    out = limits.make_large_upload(tmp_path / "large.mp4", 12)
    assert 8 * limits.MIB <= out.stat().st_size <= 12 * limits.MIB
    info = probe_video(out)
    assert (info.width, info.height) == (1280, 720) and info.frame_count >= 2


def test_sampler_sums_the_process_tree_and_keeps_the_peak():
    # a parent whose child holds 64 MiB: the tree's peak counts the child
    code = ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'b = bytearray(64 << 20); import time; time.sleep(30)']); "
            "time.sleep(30)")
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        sampler = limits.Sampler({"tree": parent.pid}, 0.05)
        deadline = time.monotonic() + 20
        # until the child has written all of its 64 MiB (the tree's sum passes 64 MiB before that)
        while sampler.snapshot()["peak_process_hwm_mib"]["tree"] < 64 and time.monotonic() < deadline:
            time.sleep(0.1)
        snap = sampler.snapshot()
        sampler.close()
        assert snap["peak_rss_mib"]["tree"] >= 64
        assert snap["peak_process_hwm_mib"]["tree"] >= 64  # the child's own high-water mark
        assert len(limits.tree(parent.pid, limits.process_table())) == 2
    finally:
        for pid in limits.tree(parent.pid, limits.process_table())[::-1]:  # the child, then the parent
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        parent.wait(10)
