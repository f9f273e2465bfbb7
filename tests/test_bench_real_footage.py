"""The real-footage benchmark's tables on a tiny fixture: per class, per source, the confusion matrix."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import real_footage as rf  # noqa: E402


def _row(clip, truth, ours, orig, source, collection="other"):
    return {"clip": clip, "truth": truth, "source": source, "collection": collection, "ours_label": ours,
            "orig_label": orig, "ours_outcome": rf.outcome(ours, truth), "orig_outcome": rf.outcome(orig, truth),
            "ours_any_outcome": rf.outcome(ours, truth), "ours_probs": None, "ours_conf": None, "orig_conf": None,
            "ours_all": [ours], "duration_s": 2.0, "tracks": 1}


@pytest.fixture
def rows():
    return [
        # one prolific source (4 clips, all right) and two single-clip sources (both wrong) of boxing
        *[_row(f"boxing/a{i}.mp4", "BOXING", "BOXING", "CLAPPING_HANDS", "one/man") for i in range(4)],
        _row("boxing/b.mp4", "BOXING", "CLAPPING_HANDS", "BOXING", "two/repo"),
        _row("boxing/c.mp4", "BOXING", "uncertain", "BOXING", "three/repo"),
        _row("clapping/X_clap_u_cm_np1_fr_med_0.avi", "CLAPPING_HANDS", "CLAPPING_HANDS", "JUMPING", "hmdb51:X",
             "hmdb51"),
        _row("clapping/k.mp4", "CLAPPING_HANDS", "too short", "too short", "four/repo"),
        _row("none/walk.mp4", "none", "uncertain", "JUMPING", "five/repo"),
        _row("none/squat.mp4", "none", "JUMPING", "JUMPING", "five/repo"),
    ]


def test_sources_of_clips(tmp_path):
    (tmp_path / "sources.csv").write_text("path,label,repository,path_in_repository,commit,note\n"
                                          "boxing/b.mp4,BOXING,two/repo,b.mp4,,\n")
    src = rf.read_sources(tmp_path)
    assert rf.source_of("boxing/b.mp4", src) == ("two/repo", "other")
    assert rf.source_of("clapping/Faith_Rewarded_clap_u_nm_np1_fr_goo_87.avi", src) == ("hmdb51:Faith_Rewarded",
                                                                                         "hmdb51")
    assert rf.source_of("none/walking_0700_3.mp4", src) == ("unlisted:none", "other")


def test_per_class_table_counts_sources_and_averages_over_them(rows):
    boxing = [r for r in rows if r["truth"] == "BOXING"]
    assert rf.source_mean(boxing, "ours_outcome") == pytest.approx(1 / 3)   # 4/4, 0/1, 0/1 -> one source in three
    assert rf.source_mean(boxing, "orig_outcome") == pytest.approx(2 / 3)
    table = rf.summary_table(rows)
    line = next(x for x in table if x.startswith("| BOXING |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:4] == ["BOXING", "6", "3", "ours"]
    assert cells[4:7] == ["67 % (4)", "17 % (1)", "17 % (1)"] and cells[9] == "33 %"
    assert any(x.startswith("| CLAPPING_HANDS (HMDB51) | 1 | 1 |") for x in table)
    assert any(x.startswith("| CLAPPING_HANDS (other sources) | 1 | 1 |") for x in table)
    assert any(x.startswith("| all | 10 | 6 |") for x in table)
    assert [x.split("|")[1].strip() for x in table[2::2]][:3] == ["BOXING", "CLAPPING_HANDS", "CLAPPING_HANDS (HMDB51)"]


def test_confusion_matrix_and_picture(rows, tmp_path):
    truths, preds, m = rf.confusion(rows, "ours_label")
    assert truths == ["BOXING", "CLAPPING_HANDS", "none"]
    row = dict(zip(preds, m[0]))
    assert (row["BOXING"], row["CLAPPING_HANDS"], row["uncertain"]) == (4, 1, 1)
    assert dict(zip(preds, m[1]))["too short"] == 1
    assert dict(zip(preds, m[2]))["JUMPING"] == 1 and dict(zip(preds, m[2]))["uncertain"] == 1
    md = rf.confusion_markdown(rows, "ours_label")
    assert md[2].startswith("| BOXING | 0 | 0 | **4** |")
    assert "**1**" in md[4]  # none -> uncertain is the right answer
    pic = tmp_path / "c.png"
    rf.confusion_png(rows, pic)
    import cv2
    img = cv2.imread(str(pic))
    assert img is not None and img.shape[0] > 200 and img.shape[1] > 600
