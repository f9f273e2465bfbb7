"""Cross-validation on real clips that leaves whole groups (original recordings) out (numpy only).

Clips of one group (one repository's set, one data set person) share a person, a room and a camera; a random split
would put the same person in training and validation and measure memory, not recognition. :func:`assign_folds`
puts every group in one fold, balancing each label's clips over the folds; :func:`person_outcomes` scores a
clip the way the benchmark scores a video's main person (mean of its windows' probabilities, "uncertain" below the
threshold; for "none" clips, "uncertain" is right).
"""
from __future__ import annotations

import collections

import numpy as np

NONE = "none"


def assign_folds(groups: list[str], labels: list[str], k: int) -> np.ndarray:
    """Fold (0..k-1) of every clip: whole groups, largest first, each into the fold that has the fewest clips of
    the group's most common label (then the fewest clips overall). Deterministic."""
    if k < 2:
        raise ValueError("need at least 2 folds")
    by_group: dict[str, list[int]] = collections.defaultdict(list)
    for i, g in enumerate(groups):
        by_group[g].append(i)
    per_label = [collections.Counter() for _ in range(k)]
    total = [0] * k
    fold = np.zeros(len(groups), np.int64)
    order = sorted(by_group, key=lambda g: (-len(by_group[g]), g))
    for g in order:
        idx = by_group[g]
        main = collections.Counter(labels[i] for i in idx).most_common(1)[0][0]
        f = min(range(k), key=lambda j: (per_label[j][main], total[j], j))
        for i in idx:
            fold[i] = f
            per_label[f][labels[i]] += 1
        total[f] += len(idx)
    return fold


def person_outcome(probs: np.ndarray | None, label: str, classes, threshold: float) -> str:
    """"correct", "uncertain", "wrong" (or "no window") for one clip's mean probabilities."""
    if probs is None:
        return "no window"
    best = int(np.argmax(probs))
    said = classes[best] if probs[best] >= threshold else "uncertain"
    if label == NONE:
        return "correct" if said == "uncertain" else "wrong"
    if said == "uncertain":
        return "uncertain"
    return "correct" if said == label else "wrong"


def person_outcomes(probs: list, labels: list[str], groups: list[str], classes, threshold: float) -> dict:
    """Per label: clips, groups, correct/uncertain/wrong counts and shares, and the correct share averaged over
    groups (each group's own share, then their mean), plus "all"."""
    rows = collections.defaultdict(list)
    for p, lab, g in zip(probs, labels, groups):
        rows[lab].append((g, person_outcome(p, lab, classes, threshold)))
    out = {}
    for lab in [c for c in list(classes) + [NONE] if c in rows] + ["all"]:
        rs = [r for v in rows.values() for r in v] if lab == "all" else rows[lab]
        n = len(rs)
        c = collections.Counter(o for _, o in rs)
        per_group = collections.defaultdict(list)
        for g, o in rs:
            per_group[g].append(o == "correct")
        out[lab] = {"clips": n, "groups": len(per_group),
                    **{o: c[o] for o in ("correct", "uncertain", "wrong", "no window")},
                    "correct_share": c["correct"] / n if n else 0.0,
                    "wrong_share": c["wrong"] / n if n else 0.0,
                    "correct_share_group_mean": float(np.mean([np.mean(v) for v in per_group.values()]))
                    if per_group else 0.0}
    return out


def outcomes_markdown(table: dict) -> list[str]:
    L = ["| truth | clips | groups | correct | uncertain | wrong | correct, mean over groups |",
         "|---|---|---|---|---|---|---|"]
    for lab, r in table.items():
        n = r["clips"]
        L.append(f"| {lab} | {n} | {r['groups']} | {100 * r['correct_share']:.0f} % ({r['correct']}) | "
                 f"{100 * r['uncertain'] / max(n, 1):.0f} % ({r['uncertain']}) | "
                 f"{100 * r['wrong_share']:.0f} % ({r['wrong']}) | {100 * r['correct_share_group_mean']:.0f} % |")
    return L
