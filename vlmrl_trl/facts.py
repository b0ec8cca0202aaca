"""Description-fact agreement: whether what a description states matches the clip's own scene.

R1 measures agreement with a small CLIP, which can be gamed (a description that names a pedestrian on every clip
may still score higher). This score checks the facts the synthetic world knows for each clip: a red or green light,
a stop sign, a pedestrian, a rider, a vehicle ahead in the lane and the number of lanes. For each fact,
``agreement`` is the share of descriptions whose statement matches the scene (not mentioning a thing states its
absence); ``base_rate`` is the agreement of always giving the commoner answer, so a description is informative
about a fact only where agreement beats it. The synthetic generator writes each split's facts to
``{split}_facts.json``; real data sets have none and get no fact score.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .data.synthetic import Scene

FACTS: tuple[str, ...] = ("red_light", "green_light", "stop_sign", "pedestrian", "rider", "car_ahead", "lanes")
FACTS_FILE = "{split}_facts.json"
Facts = dict[str, bool | int | None]

_PATTERNS: dict[str, re.Pattern[str]] = {
    "red_light": re.compile(r"(?:traffic light is|signal shows) red\b|\ba red light\b"),
    "green_light": re.compile(r"(?:traffic light is|signal shows) green\b|\ba green light\b"),
    "stop_sign": re.compile(r"\bstop sign\b"),
    "pedestrian": re.compile(r"\b(?:pedestrian|person|someone|people)\b"),
    "rider": re.compile(r"\b(?:motor)?cyclists?\b"),
    "car_ahead": re.compile(
        r"\b(?:car|van|truck) (?:ahead|is close ahead|is just in front|drives ahead|is ahead in the lane)\b"
        r"|\bfollows an? [a-z ]*?\b(?:car|van|truck)\b"
    ),
}
_LANES = re.compile(r"\b(single|one|two|three)-lane\b")
_LANE_WORDS = {"single": 1, "one": 1, "two": 2, "three": 3}


def scene_facts(scene: Scene) -> Facts:
    """What a synthetic scene shows, fact by fact (the things its reference description mentions)."""
    from .data.synthetic.scene import ADJACENT_NEAR_MAX_Z

    color = scene.light.color if scene.light is not None else None
    return {
        "red_light": color == "red",
        "green_light": color == "green",
        "stop_sign": scene.stop_sign_z is not None,
        "pedestrian": any(p.role != "sidewalk" for p in scene.pedestrians),  # sidewalk walkers go unmentioned
        "rider": any(r.rel_lane == 0 or (abs(r.rel_lane) == 1 and r.z <= ADJACENT_NEAR_MAX_Z) for r in scene.riders),
        "car_ahead": scene.lead_vehicle() is not None,
        "lanes": scene.num_lanes,
    }


def stated_facts(text: str) -> Facts:
    """What a description states, fact by fact; ``lanes`` is None when it names no lane count."""
    lower = text.lower()
    stated: Facts = {name: bool(pattern.search(lower)) for name, pattern in _PATTERNS.items()}
    match = _LANES.search(lower)
    stated["lanes"] = _LANE_WORDS[match.group(1)] if match else None
    return stated


def fact_agreement(descriptions: Sequence[str], truths: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per fact: agreement of the descriptions with the scenes, the base rate and the clip count; plus their means."""
    if len(descriptions) != len(truths):
        raise ValueError(f"{len(descriptions)} descriptions but {len(truths)} scenes' facts")
    stated = [stated_facts(text) for text in descriptions]
    per_fact: dict[str, Any] = {}
    for name in FACTS:
        truth = [t[name] for t in truths]
        n = len(truth)
        agree = sum(s[name] == t for s, t in zip(stated, truth, strict=True))
        commonest = Counter(truth).most_common(1)[0][1] if n else 0
        per_fact[name] = {
            "agreement": agree / n if n else 0.0,
            "base_rate": commonest / n if n else 0.0,
            "n": n,
        }
    return {
        "mean_agreement": sum(f["agreement"] for f in per_fact.values()) / len(FACTS),
        "mean_base_rate": sum(f["base_rate"] for f in per_fact.values()) / len(FACTS),
        "per_fact": per_fact,
        "n": len(descriptions),
    }


def record_description(record: Mapping[str, Any]) -> str:
    """The description in a prediction record: its decision's ``scene``, else the raw output (a frames-only one)."""
    prediction = record.get("prediction")
    if isinstance(prediction, Mapping) and isinstance(prediction.get("scene"), str):
        return prediction["scene"]
    return str(record.get("text", ""))


def load_split_facts(root: str | Path, split: str) -> dict[str, Facts] | None:
    """The facts of each clip of a split by clip id, or None when the folder has no facts file."""
    path = Path(root) / FACTS_FILE.format(split=split)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def record_fact_agreement(records: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Fact agreement of prediction records whose clips have known facts (via their ``data_root`` and ``split``);
    None when none has."""
    cache: dict[tuple[str, str], dict[str, Facts] | None] = {}
    descriptions, truths = [], []
    for rec in records:
        root, split = rec.get("data_root"), rec.get("split")
        if not isinstance(root, str) or not isinstance(split, str):
            continue
        if (root, split) not in cache:
            cache[root, split] = load_split_facts(root, split)
        known = cache[root, split]
        truth = known.get(str(rec.get("clip_id"))) if known is not None else None
        if truth is not None:
            descriptions.append(record_description(rec))
            truths.append(truth)
    return fact_agreement(descriptions, truths) if truths else None


def format_fact_table(facts: Mapping[str, Any]) -> str:
    """Plain-text lines: agreement against base rate, fact by fact."""
    lines = [f"description facts (n = {facts['n']}): agreement with the scene / base rate (commoner answer)"]
    for name, f in facts["per_fact"].items():
        lines.append(f"  {name:26} {f['agreement']:.4f} / {f['base_rate']:.4f}")
    lines.append(f"  {'mean':26} {facts['mean_agreement']:.4f} / {facts['mean_base_rate']:.4f}")
    return "\n".join(lines)
