"""Visual evaluation reports: static HTML pages with PNG images and a little inline script, viewable offline.

``report.html`` shows, for a sampled page of clips, the frames, the ground-truth (G) and predicted (P) actions as
four arrows, the true and predicted scene descriptions, and the reasons colour-coded (true positive green, false
positive red, missed gray); above them, the headline metrics and per-class F1 bars, and controls that sort and
filter the clips by their errors. ``compare.html`` sets two runs side by side (e.g. SFT and an RL stage): per-class
F1 of each, and the clips whose answer changed. Class names come from the metrics (their ``per_class`` keys), with
the label set's labels (``label_set``, BDD-OIA's by default) where it has them. Drawing uses Pillow only.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from PIL import Image, ImageDraw, ImageFont

from .labels import BDDOIA, LabelSet
from .schema import Decision, parse_decision

REPORT_FILE = "report.html"
IMAGES_DIR = "report"
COMPARE_FILE = "compare.html"
COMPARE_IMAGES_DIR = "compare"
GROUPS = ("actions", "reasons")

# Colours shared by the PNGs and the page, so a reason chip and an arrow mean the same thing.
TP, FP, MISSED, TRUTH = "#2e7d32", "#c62828", "#9e9e9e", "#1565c0"
IDLE_FILL, IDLE_LINE, INK, MUTED = "#f1f3f4", "#d5d9dd", "#202124", "#5f6368"

# Frames on disk for a record, or None when they cannot be found.
FrameSource = Callable[[Mapping[str, Any]], Sequence[Image.Image] | None]

_SCALE = 2  # PNGs are drawn at twice their CSS size, so they stay sharp on high-density screens
_ARROW_CELL = 30  # CSS pixels of one arrow cell
_FRAME_HEIGHT = 144  # CSS pixels of one frame thumbnail


def _font(size: float) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(1, round(size)))


def _rotate(points: list[tuple[float, float]], degrees: float, cx: float, cy: float) -> list[tuple[float, float]]:
    a = math.radians(degrees)
    cos, sin = math.cos(a), math.sin(a)
    return [(cx + (x - cx) * cos - (y - cy) * sin, cy + (x - cx) * sin + (y - cy) * cos) for x, y in points]


def _arrow(cx: float, cy: float, c: float, degrees: float) -> list[tuple[float, float]]:
    """An arrow polygon filling a cell of size ``c``, pointing up and then turned by ``degrees``."""
    tip, head, half_head, half_shaft, tail = cy - 0.42 * c, cy - 0.02 * c, 0.36 * c, 0.14 * c, cy + 0.42 * c
    up = [
        (cx, tip),
        (cx + half_head, head),
        (cx + half_shaft, head),
        (cx + half_shaft, tail),
        (cx - half_shaft, tail),
        (cx - half_shaft, head),
        (cx - half_head, head),
    ]
    return _rotate(up, degrees, cx, cy)


def _octagon(cx: float, cy: float, c: float) -> list[tuple[float, float]]:
    r = 0.40 * c
    return [
        (cx + r * math.cos(math.radians(22.5 + 45 * k)), cy + r * math.sin(math.radians(22.5 + 45 * k)))
        for k in range(8)
    ]


# Where each BDD-OIA action sits on the pad (column, row) and how it is drawn: forward up, left and right to the
# sides, stop as a stop sign in the middle.
_PAD = {"move_forward": (1, 0, 0.0), "turn_left": (0, 1, -90.0), "stop": (1, 1, None), "turn_right": (2, 1, 90.0)}


def _pad_layout(action_ids: tuple[str, ...]) -> dict[str, tuple[int, int, float | None]]:
    """The BDD-OIA pad for its actions; any other label set's actions as a row of octagons in bit order."""
    if set(action_ids) == set(_PAD):
        return _PAD
    return {aid: (col, 0, None) for col, aid in enumerate(action_ids)}


def _action_states(
    action_ids: Sequence[str], true_bits: Sequence[int], pred_bits: Sequence[int] | None
) -> dict[str, tuple[str, str]]:
    """For each action id, the (G, P) state: G is 'on'/'off'; P is 'tp', 'fp', 'missed' or 'off'."""
    states = {}
    for i, aid in enumerate(action_ids):
        t, p = bool(true_bits[i]), bool(pred_bits[i]) if pred_bits is not None else False
        states[aid] = ("on" if t else "off", "tp" if t and p else "fp" if p else "missed" if t else "off")
    return states


_STYLE = {
    "on": (TRUTH, TRUTH),
    "tp": (TP, TP),
    "fp": (FP, FP),
    "missed": ("#ffffff", MISSED),
    "off": (IDLE_FILL, IDLE_LINE),
}


def draw_actions(
    true_bits: Sequence[int], pred_bits: Sequence[int] | None, action_ids: Sequence[str] = BDDOIA.action_ids
) -> Image.Image:
    """Two arrow pads, G (ground truth, blue) and P (prediction: green if right, red if wrong, a gray
    outline where a true action was missed). ``pred_bits`` is None when the output did not parse."""
    pred = None if pred_bits is None else tuple(pred_bits)
    return _draw_actions(tuple(action_ids), tuple(true_bits), pred).copy()


@cache  # BDD-OIA: at most 16 x 17 distinct pads
def _draw_actions(
    action_ids: tuple[str, ...], true_bits: tuple[int, ...], pred_bits: tuple[int, ...] | None
) -> Image.Image:
    states = _action_states(action_ids, true_bits, pred_bits)
    layout = _pad_layout(action_ids)
    ss = 4 * _SCALE  # supersample, then shrink: Pillow polygons have no antialiasing
    c = _ARROW_CELL * ss
    label_w, gap, pad = 0.9 * c, 0.7 * c, 0.15 * c
    pad_w = (1 + max(col for col, _, _ in layout.values())) * c
    pad_h = (1 + max(row for _, row, _ in layout.values())) * c
    width, height = round(2 * (label_w + pad_w) + gap + 2 * pad), round(pad_h + 2 * pad)
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    font = _font(0.8 * c)
    for k, (letter, which) in enumerate((("G", 0), ("P", 1))):
        x0 = pad + k * (label_w + pad_w + gap)
        draw.text((x0 + label_w / 2, pad + pad_h / 2), letter, fill=INK, font=font, anchor="mm")
        for aid, (col, row, angle) in layout.items():
            fill, line = _STYLE[states[aid][which]]
            cx, cy = x0 + label_w + (col + 0.5) * c, pad + (row + 0.5) * c
            shape = _octagon(cx, cy, c) if angle is None else _arrow(cx, cy, c, angle)
            draw.polygon(shape, fill=fill, outline=line, width=round(0.07 * c))
    return img.resize((width // 4, height // 4), Image.LANCZOS)


def draw_frames(frames: Sequence[Image.Image]) -> Image.Image:
    """The clip's frames side by side, oldest first, each tagged with its offset from the last frame."""
    h = _FRAME_HEIGHT * _SCALE
    tiles = [f.convert("RGB").resize((max(1, round(f.width * h / f.height)), h), Image.LANCZOS) for f in frames]
    gap = 3 * _SCALE
    strip = Image.new("RGB", (sum(t.width for t in tiles) + gap * (len(tiles) - 1), h), "white")
    font = _font(11 * _SCALE)
    x = 0
    for i, tile in enumerate(tiles):
        strip.paste(tile, (x, 0))
        offset = i - (len(tiles) - 1)
        tag = "t" if offset == 0 else f"t{offset}"
        draw = ImageDraw.Draw(strip)
        box = draw.textbbox((x + 5 * _SCALE, 4 * _SCALE), tag, font=font)
        draw.rectangle((box[0] - 3 * _SCALE, box[1] - 2 * _SCALE, box[2] + 3 * _SCALE, box[3] + 2 * _SCALE), fill=INK)
        draw.text((x + 5 * _SCALE, 4 * _SCALE), tag, fill="white", font=font)
        x += tile.width + gap
    return strip


def class_names(metrics: Mapping[str, Any], group: str, label_set: LabelSet = BDDOIA) -> list[tuple[str, str]]:
    """The (id, label) of each class of ``group`` in bit order, read from the metrics; the label is the metrics'
    own (``labels``), else the label set's, else the id."""
    own = metrics[group].get("labels") or {}
    return [(cid, own.get(cid) or label_set.labels.get(cid, cid)) for cid in metrics[group]["per_class"]]


def draw_f1_bars(metrics: Mapping[str, Any]) -> Image.Image:
    """Horizontal per-class F1 bars for the actions and the reasons, with support counts and the mF1 line; each bar
    is named by the same label as the page's reason chips."""
    s = _SCALE
    row, label_w, bar_w, value_w, margin = 21 * s, 290 * s, 420 * s, 125 * s, 14 * s
    title_h, axis_h, group_gap = 26 * s, 18 * s, 18 * s
    groups = [
        (group, class_names(metrics, group), colour) for group, colour in zip(GROUPS, (TRUTH, "#00897b"), strict=True)
    ]
    height = margin * 2 + sum(title_h + axis_h + row * len(items) for _, items, _ in groups) + group_gap
    width = margin * 2 + label_w + bar_w + value_w
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    title_font, font, small = _font(15 * s), _font(12.5 * s), _font(11 * s)
    y = margin
    for group, items, colour in groups:
        m = metrics[group]
        draw.text((margin, y), f"{group.capitalize()}: per-class F1", fill=INK, font=title_font)
        summary = f"mF1 {m['mf1']:.3f}   F1_all {m['f1_all']:.3f}"
        draw.text((width - margin, y), summary, fill=MUTED, font=font, anchor="ra")
        y += title_h
        x0 = margin + label_w
        for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
            tx = x0 + tick * bar_w
            draw.line((tx, y + axis_h - 3 * s, tx, y + axis_h + row * len(items)), fill="#e8eaed", width=s)
            draw.text((tx, y + axis_h - 5 * s), f"{tick:g}", fill=MUTED, font=small, anchor="md")
        y += axis_h
        for k, (cid, label) in enumerate(items):
            f1 = m["per_class"][cid]
            top = y + k * row
            draw.text((x0 - 8 * s, top + row / 2), label, fill=INK, font=font, anchor="rm")
            draw.rectangle((x0, top + 4 * s, x0 + bar_w, top + row - 4 * s), fill="#f4f5f6")
            if f1 > 0:
                draw.rectangle((x0, top + 4 * s, x0 + max(1, f1 * bar_w), top + row - 4 * s), fill=colour)
            value = f"{f1:.3f}  (n={m['support'][cid]})"
            draw.text((x0 + bar_w + 8 * s, top + row / 2), value, fill=INK, font=small, anchor="lm")
        mx = x0 + m["mf1"] * bar_w
        for dash in range(y, y + row * len(items), 6 * s):  # dashed line at the class mean
            draw.line((mx, dash, mx, min(dash + 3 * s, y + row * len(items))), fill=INK, width=s)
        y += row * len(items) + group_gap
    return img


def sample_indices(n: int, k: int, seed: int) -> list[int]:
    """A reproducible sample of ``k`` record indices out of ``n`` (all of them when ``k >= n``), in order."""
    return list(range(n)) if k >= n else sorted(random.Random(seed).sample(range(n), k))


@dataclass(frozen=True)
class _Image:
    """A PNG written next to the page: its path relative to the page and its CSS size."""

    src: str
    width: int
    height: int


def _reason_chips(
    true_bits: Sequence[int], decision: Decision | None, names: Sequence[tuple[str, str]]
) -> list[tuple[str, str, str]]:
    """The (kind, id, label) of each reason that is true or predicted: kind is 'tp', 'fp' or 'missed'."""
    pred = set(decision.reasons) if decision is not None else set()
    chips = []
    for bit, (rid, label) in enumerate(names):
        truth, said = bool(true_bits[bit]), rid in pred
        kind = "tp" if truth and said else "fp" if said else "missed" if truth else None
        if kind:
            chips.append((kind, rid, label))
    return chips


def _sample_f1(t: Sequence[int], p: Sequence[int]) -> float:
    tp = sum(a and b for a, b in zip(t, p, strict=True))
    den = sum(t) + sum(p)
    return 2 * tp / den if den else 1.0  # nothing true and nothing predicted: right


def _bits(ids: Sequence[str], names: Sequence[tuple[str, str]]) -> list[int]:
    said = set(ids)
    return [int(cid in said) for cid, _ in names]


class _Answer:
    """A record's parsed answer scored against its labels, in the metrics' class order."""

    def __init__(
        self, rec: Mapping[str, Any], names: Mapping[str, Sequence[tuple[str, str]]], label_set: LabelSet
    ) -> None:
        self.parsed = parse_decision(rec["text"], label_set)
        self.decision = self.parsed if isinstance(self.parsed, Decision) else None
        d = self.decision
        self.actions = _bits(d.actions, names["actions"]) if d else [0] * len(names["actions"])
        self.reasons = _bits(d.reasons, names["reasons"]) if d else [0] * len(names["reasons"])
        self.action_f1 = _sample_f1(rec["actions"], self.actions) if d else 0.0
        self.reason_f1 = _sample_f1(rec["reasons"], self.reasons) if d else 0.0
        self.actions_right = d is not None and self.actions == list(rec["actions"])
        self.reasons_right = d is not None and self.reasons == list(rec["reasons"])

    @property
    def key(self) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """What the answer decided (None when it did not parse), to tell whether two runs answered alike."""
        return (tuple(self.actions), tuple(self.reasons)) if self.decision else None


def _names(metrics: Mapping[str, Any], label_set: LabelSet) -> dict[str, list[tuple[str, str]]]:
    return {group: class_names(metrics, group, label_set) for group in GROUPS}


def _action_names(bits: Sequence[int], names: Sequence[tuple[str, str]]) -> str:
    return ", ".join(label for (_, label), b in zip(names, bits, strict=True) if b) or "none"


def _true_scene(rec: Mapping[str, Any]) -> str | None:
    scene = rec.get("true_scene")
    return scene if isinstance(scene, str) and scene else None


@cache
def _templates() -> jinja2.Environment:
    """The pages' Jinja2 templates (package data in ``vlmrl_trl/templates``), autoescaped and strict about names."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("vlmrl_trl", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["colours"] = {"tp": TP, "fp": FP, "missed": MISSED, "truth": TRUTH, "ink": INK, "muted": MUTED}
    return env


def _write_page(path: Path, template: str, **context: Any) -> Path:
    path.write_text(_templates().get_template(template).render(groups=GROUPS, **context), encoding="utf-8")
    return path


def _save(img: Image.Image, path: Path) -> _Image:
    img.save(path)
    return _Image(f"{path.parent.name}/{path.name}", img.width // _SCALE, img.height // _SCALE)


def _fresh_images(folder: Path) -> Path:
    """``folder``, created, without the PNGs of an earlier run (which must not be left behind)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    return folder


def _actions_image(images: Path, names: dict, true_bits: Sequence[int], pred_bits: Sequence[int] | None) -> _Image:
    """The G/P arrow pads; one PNG per distinct (G, P) pair, shared by its clips."""
    img = draw_actions(true_bits, pred_bits, [cid for cid, _ in names["actions"]])
    name = f"actions_G{''.join(map(str, true_bits))}_P{''.join(map(str, pred_bits)) if pred_bits else 'x'}.png"
    if (images / name).is_file():
        return _Image(f"{images.name}/{name}", img.width // _SCALE, img.height // _SCALE)
    return _save(img, images / name)


def _frames_image(images: Path, name: str, frames: Sequence[Image.Image] | None) -> _Image | None:
    return _save(draw_frames(frames), images / name) if frames else None


def _clip_card(
    i: int, rec: Mapping[str, Any], answer: _Answer, images: Path, names: dict, frames: FrameSource | None
) -> dict[str, Any]:
    """What the report shows of one sampled clip; its PNGs are written on the way."""
    pred_bits = answer.actions if answer.decision else None
    return {
        "i": i,
        "clip": str(rec.get("clip_id", f"#{i}")),
        "answer": answer,
        "actions": _actions_image(images, names, rec["actions"], pred_bits),
        "frames": _frames_image(images, f"clip{i:05d}_frames.png", frames(rec) if frames is not None else None),
        "truth_names": _action_names(rec["actions"], names["actions"]),
        "pred_names": "unparsed output" if pred_bits is None else _action_names(pred_bits, names["actions"]),
        "true_scene": _true_scene(rec),
        "chips": _reason_chips(rec["reasons"], answer.decision, names["reasons"]),
        "text": rec["text"],
    }


def render_report(
    records: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, Any],
    out_dir: str | Path,
    frames: FrameSource | None = None,
    samples: int = 48,
    seed: int = 0,
    title: str = "vlmrl-trl evaluation",
    label_set: LabelSet = BDDOIA,
) -> Path:
    """Write ``out_dir/report.html`` and its PNGs in ``out_dir/report/`` for a seeded sample of ``samples``
    records (as read by :func:`vlmrl_trl.metrics.read_predictions`); ``frames`` finds a record's frames."""
    if samples < 1:
        raise ValueError(f"the report needs at least one sampled clip, got samples={samples}")
    out = Path(out_dir)
    images = _fresh_images(out / IMAGES_DIR)
    names = _names(metrics, label_set)
    bars = _save(draw_f1_bars(metrics), images / "f1_bars.png")
    picked = sample_indices(len(records), samples, seed)
    cards = [_clip_card(i, records[i], _Answer(records[i], names, label_set), images, names, frames) for i in picked]
    return _write_page(
        out / REPORT_FILE,
        "report.html.j2",
        title=title,
        metrics=metrics,
        n_invalid=sum(not isinstance(parse_decision(r["text"], label_set), Decision) for r in records),
        seed=seed,
        keys=("f1_all", "mf1", "micro_f1", "exact_match", "accuracy"),
        bars=bars,
        sorts=[("order", "clip order"), ("action", "worst action F1 first"), ("reason", "worst reason F1 first")],
        filters=[("badactions", "wrong actions"), ("badreasons", "wrong reasons"), ("invalid", "invalid outputs")],
        cards=cards,
    )


def changed_answers(
    before: Sequence[Mapping[str, Any]],
    after: Sequence[Mapping[str, Any]],
    names: dict,
    label_set: LabelSet = BDDOIA,
) -> tuple[list[tuple[Mapping[str, Any], _Answer, _Answer]], int]:
    """The clips (by ``clip_id``) present in both runs whose decided actions or reasons differ, or whose output
    parsed in one run only, with both answers; and how many clips the two runs share."""
    after_by_id = {rec.get("clip_id"): rec for rec in after}
    changed, shared = [], 0
    for rec in before:
        other = after_by_id.get(rec.get("clip_id"))
        if other is None:
            continue
        shared += 1
        a, b = _Answer(rec, names, label_set), _Answer(other, names, label_set)
        if a.key != b.key:
            changed.append((rec, a, b))
    return changed, shared


def _change_card(
    i: int,
    rec: Mapping[str, Any],
    answers: tuple[_Answer, _Answer],
    labels: tuple[str, str],
    images: Path,
    frames_img: _Image | None,
    names: dict,
) -> dict[str, Any]:
    """What the comparison page shows of one changed clip: both runs' answers and the change in their mean F1."""
    scores = [(a.action_f1 + a.reason_f1) / 2 for a in answers]
    runs = [
        {
            "label": label,
            "answer": answer,
            "actions": _actions_image(images, names, rec["actions"], answer.actions if answer.decision else None),
            "chips": _reason_chips(rec["reasons"], answer.decision, names["reasons"]),
        }
        for label, answer in zip(labels, answers, strict=True)
    ]
    return {
        "i": i,
        "clip": str(rec.get("clip_id", f"#{i}")),
        "scores": scores,
        "delta": scores[1] - scores[0],
        "frames": frames_img,
        "true_scene": _true_scene(rec),
        "truth_names": _action_names(rec["actions"], names["actions"]),
        "runs": runs,
    }


def render_comparison(
    before: Sequence[Mapping[str, Any]],
    after: Sequence[Mapping[str, Any]],
    before_metrics: Mapping[str, Any],
    after_metrics: Mapping[str, Any],
    out_dir: str | Path,
    labels: tuple[str, str] = ("before", "after"),
    frames: FrameSource | None = None,
    max_clips: int = 60,
    label_set: LabelSet = BDDOIA,
) -> Path:
    """Write ``out_dir/compare.html`` (PNGs in ``out_dir/compare/``): two runs' metrics and per-class F1 side by
    side, and up to ``max_clips`` of the clips whose answer changed, those that got worst first."""
    if max_clips < 1:
        raise ValueError(f"max_clips must be at least 1, got {max_clips}")
    for group in GROUPS:
        if list(before_metrics[group]["per_class"]) != list(after_metrics[group]["per_class"]):
            raise ValueError(f"the two runs do not score the same {group}; compare runs of one label set")
    out = Path(out_dir)
    images = _fresh_images(out / COMPARE_IMAGES_DIR)
    names = _names(before_metrics, label_set)
    changed, shared = changed_answers(before, after, names, label_set)
    if not shared:
        raise ValueError("the two prediction files share no clip_id: compare two runs on the same clips")
    deltas = [(b.action_f1 + b.reason_f1 - a.action_f1 - a.reason_f1) / 2 for _, a, b in changed]
    order = sorted(range(len(changed)), key=lambda k: deltas[k])[:max_clips]
    cards = []
    for n, k in enumerate(order):
        rec, a, b = changed[k]
        frames_img = _frames_image(images, f"clip{n:05d}_frames.png", frames(rec) if frames is not None else None)
        cards.append(_change_card(n, rec, (a, b), labels, images, frames_img, names))
    return _write_page(
        out / COMPARE_FILE,
        "compare.html.j2",
        title=f"{labels[0]} vs {labels[1]}",
        labels=labels,
        shared=shared,
        only=len(before) + len(after) - 2 * shared,
        n_changed=len(changed),
        better=sum(d > 0 for d in deltas),
        worse=sum(d < 0 for d in deltas),
        before=before_metrics,
        after=after_metrics,
        class_names={group: class_names(before_metrics, group) for group in GROUPS},
        sorts=[("delta", "got worse first"), ("-delta", "got better first")],
        filters=[("worse", "got worse"), ("better", "got better")],
        cards=cards,
    )


__all__ = [
    "changed_answers",
    "class_names",
    "draw_actions",
    "draw_f1_bars",
    "draw_frames",
    "render_comparison",
    "render_report",
    "sample_indices",
]
