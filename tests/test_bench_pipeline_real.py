"""bench/pipeline_real.py: the original's timings cache, the ratios' distribution and the table of the worst clips."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import pipeline_real as pr  # noqa: E402


def _row(clip, cpu_ratio, wall_ratio, **kw):
    row = {"clip": clip, "label": "BOXING", "size": "1280x720", "fps": 30.0, "duration_s": 5.0,
           "orig_wall_s": 20.0, "orig_cpu_s": 20.0, "ours_wall_s": 20.0 / wall_ratio, "ours_cpu_s": 20.0 / cpu_ratio,
           "ours_rss_mib": 200.0, "wall_ratio": wall_ratio, "cpu_ratio": cpu_ratio, "frames": 55, "full_frames": 6,
           "crops": 49, "lost_in_crops": 0, "crowd_frames": 0, "tracks": 1, "decode_share": 0.25}
    row.update(kw)
    return row


def test_summary_gives_median_worst_and_clips_below_ten():
    rows = [_row("a.mp4", 12.0, 14.0), _row("b.mp4", 8.0, 9.5), _row("c.mp4", 15.0, 11.0)]
    s = pr.summarize(rows)
    assert s["clips"] == 3
    assert s["cpu_ratio"] == {"median": 12.0, "worst": 8.0, "below_10": 1}
    assert s["wall_ratio"] == {"median": 11.0, "worst": 9.5, "below_10": 1}


def test_markdown_lists_the_worst_clips_first_with_what_they_spent():
    rows = [_row(f"c{i}.mp4", 10.0 + i, 12.0) for i in range(7)]
    rows[3] = _row("slow.mp4", 6.5, 7.0, full_frames=40, lost_in_crops=3, tracks=5, decode_share=0.4)
    text = pr.markdown(rows, {"min_seconds": 2.0, "cpus": 2, "command": "python bench/bench_pipeline.py --real"})
    assert "| worst | **6.5×** | **7.0×** |" in text and "| clips below 10× | 1 | 1 |" in text
    worst = text.split("The 5 worst clips")[1].split("Every clip:")[0]
    table = [line for line in worst.splitlines() if line.startswith("| ") and ".mp4" in line]
    assert len(table) == 5 and table[0].startswith("| slow.mp4 |")
    assert "| 40 / 55 | 49 | 3 | 5 | 40 % |" in table[0]
    assert text.count(".mp4 |") == 5 + 7  # the worst five, then every clip once
    assert text.rstrip().endswith("`python bench/bench_pipeline.py --real`")


def test_original_cache_keeps_entries_by_hash(tmp_path):
    path = tmp_path / "timings.json"
    cache = pr.OriginalCache(path)
    assert cache.get("abc") is None
    cache.put("abc", {"clip": "x.mp4", "cpu_s": 10.0, "wall_s": 11.0})
    again = pr.OriginalCache(path)
    assert again.get("abc") == {"clip": "x.mp4", "cpu_s": 10.0, "wall_s": 11.0}
    assert json.loads(path.read_text())["machine"]["cpus"] >= 1


def test_real_clips_reads_labels_and_skips_short_clips(tmp_path):
    from media import make_people_video

    make_people_video(tmp_path / "long.mp4", seconds=2.5)
    make_people_video(tmp_path / "short.mp4", seconds=1.0)
    (tmp_path / "labels.csv").write_text("path,label\nlong.mp4,BOXING\nshort.mp4,CLAPPING_HANDS\nmissing.mp4,none\n")
    clips = pr.real_clips(tmp_path, 2.0)
    assert [(rel, label) for rel, label, _ in clips] == [("long.mp4", "BOXING")]
    assert clips[0][2] == tmp_path / "long.mp4"
