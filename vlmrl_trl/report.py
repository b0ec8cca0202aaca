"""A visual evaluation report: a static HTML page with PNG images, viewable offline.

For a sampled page of clips it shows the frames, the ground-truth (G) and predicted (P) actions as four
arrows, and the reasons colour-coded (true positive green, false positive red, missed gray); above them,
the headline metrics and per-class F1 bars. Drawing uses Pillow only.
"""

from __future__ import annotations

import html
import math
import random
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from .schema import ACTION_IDS, ACTIONS, REASON_IDS, REASONS, Decision, ParseFailure, parse_decision

REPORT_FILE = "report.html"
IMAGES_DIR = "report"

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


# Where each action sits on the pad (column, row) and how it is drawn: forward up, left and right to the
# sides, stop as a stop sign in the middle.
_PAD = {"move_forward": (1, 0, 0.0), "turn_left": (0, 1, -90.0), "stop": (1, 1, None), "turn_right": (2, 1, 90.0)}


def _action_states(true_bits: Sequence[int], pred_bits: Sequence[int] | None) -> dict[str, tuple[str, str]]:
    """For each action id, the (G, P) state: G is 'on'/'off'; P is 'tp', 'fp', 'missed' or 'off'."""
    states = {}
    for i, aid in enumerate(ACTION_IDS):
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


def draw_actions(true_bits: Sequence[int], pred_bits: Sequence[int] | None) -> Image.Image:
    """Two arrow pads, G (ground truth, blue) and P (prediction: green if right, red if wrong, a gray
    outline where a true action was missed). ``pred_bits`` is None when the output did not parse."""
    return _draw_actions(tuple(true_bits), None if pred_bits is None else tuple(pred_bits)).copy()


@cache  # at most 16 x 17 distinct pads
def _draw_actions(true_bits: tuple[int, ...], pred_bits: tuple[int, ...] | None) -> Image.Image:
    states = _action_states(true_bits, pred_bits)
    ss = 4 * _SCALE  # supersample, then shrink: Pillow polygons have no antialiasing
    c = _ARROW_CELL * ss
    label_w, gap, pad = 0.9 * c, 0.7 * c, 0.15 * c
    pad_w, pad_h = 3 * c, 2 * c
    width, height = round(2 * (label_w + pad_w) + gap + 2 * pad), round(pad_h + 2 * pad)
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    font = _font(0.8 * c)
    for k, (letter, which) in enumerate((("G", 0), ("P", 1))):
        x0 = pad + k * (label_w + pad_w + gap)
        draw.text((x0 + label_w / 2, pad + pad_h / 2), letter, fill=INK, font=font, anchor="mm")
        for aid, (col, row, angle) in _PAD.items():
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


def draw_f1_bars(metrics: Mapping[str, Any]) -> Image.Image:
    """Horizontal per-class F1 bars for the actions and the reasons, with support counts and the mF1 line."""
    s = _SCALE
    row, label_w, bar_w, value_w, margin = 21 * s, 200 * s, 420 * s, 125 * s, 14 * s
    title_h, axis_h, group_gap = 26 * s, 18 * s, 18 * s
    groups = [("actions", ACTIONS, TRUTH), ("reasons", REASONS, "#00897b")]
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
        for k, item in enumerate(items):
            f1 = m["per_class"][item.id]
            top = y + k * row
            draw.text((x0 - 8 * s, top + row / 2), item.id, fill=INK, font=font, anchor="rm")
            draw.rectangle((x0, top + 4 * s, x0 + bar_w, top + row - 4 * s), fill="#f4f5f6")
            if f1 > 0:
                draw.rectangle((x0, top + 4 * s, x0 + max(1, f1 * bar_w), top + row - 4 * s), fill=colour)
            value = f"{f1:.3f}  (n={m['support'][item.id]})"
            draw.text((x0 + bar_w + 8 * s, top + row / 2), value, fill=INK, font=small, anchor="lm")
        mx = x0 + m["mf1"] * bar_w
        for dash in range(y, y + row * len(items), 6 * s):  # dashed line at the class mean
            draw.line((mx, dash, mx, min(dash + 3 * s, y + row * len(items))), fill=INK, width=s)
        y += row * len(items) + group_gap
    return img


def sample_indices(n: int, k: int, seed: int) -> list[int]:
    """A reproducible sample of ``k`` record indices out of ``n`` (all of them when ``k >= n``), in order."""
    return list(range(n)) if k >= n else sorted(random.Random(seed).sample(range(n), k))


def _reason_chips(true_bits: Sequence[int], decision: Decision | None) -> str:
    pred = set(decision.reasons) if decision is not None else set()
    chips = []
    for bit, reason in enumerate(REASONS):
        truth, said = bool(true_bits[bit]), reason.id in pred
        kind = "tp" if truth and said else "fp" if said else "missed" if truth else None
        if kind:
            tip = f"{reason.id} ({kind})"
            chips.append(f'<span class="reason {kind}" title="{tip}">{html.escape(reason.label)}</span>')
    return "".join(chips) or '<span class="none">no reasons, true or predicted</span>'


def _sample_f1(t: Sequence[int], p: Sequence[int]) -> float:
    tp = sum(a and b for a, b in zip(t, p, strict=True))
    den = sum(t) + sum(p)
    return 2 * tp / den if den else 0.0


def _clip_card(
    i: int, rec: Mapping[str, Any], parsed: Decision | ParseFailure, frames_img: str | None, actions_img: str
) -> str:
    decision = parsed if isinstance(parsed, Decision) else None
    pred_actions = decision.action_bits() if decision else [0] * len(ACTION_IDS)
    pred_reasons = decision.reason_bits() if decision else [0] * len(REASON_IDS)
    clip = html.escape(str(rec.get("clip_id", f"#{i}")))
    truth_names = ", ".join(a for a, b in zip(ACTION_IDS, rec["actions"], strict=True) if b) or "none"
    pred_names = (", ".join(decision.actions) or "none") if decision else "unparsed output"
    frames = (
        f'<img class="frames" {frames_img} alt="frames of {clip}">'
        if frames_img
        else '<div class="noframes">frames not found</div>'
    )
    if decision is not None:
        verdict = f'<p class="scene">{html.escape(decision.scene) or "<i>(no scene text)</i>"}</p>'
    else:
        verdict = f'<p class="error">invalid output: {html.escape(str(parsed))}</p>'
    action_f1, reason_f1 = _sample_f1(rec["actions"], pred_actions), _sample_f1(rec["reasons"], pred_reasons)
    scores = f"action F1 {action_f1:.2f} · reason F1 {reason_f1:.2f}"
    return f"""
<section class="clip" id="clip-{i}">
  <header><span class="clipid">{clip}</span><span class="scores">{scores}</span></header>
  {frames}
  <div class="body">
    <img class="actions" {actions_img} alt="G: {html.escape(truth_names)}; P: {html.escape(pred_names)}"
         title="G: {html.escape(truth_names)} | P: {html.escape(pred_names)}">
    <div class="text">
      {verdict}
      <div class="reasons">{_reason_chips(rec["reasons"], decision)}</div>
    </div>
  </div>
  <details><summary>raw output</summary><pre>{html.escape(rec["text"])}</pre></details>
</section>"""


_CSS = f"""
body {{ font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: {INK}; margin: 24px auto;
       max-width: 1180px; padding: 0 16px; background: #fafafa; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }} .sub {{ color: {MUTED}; margin: 0 0 16px; }}
table.metrics {{ border-collapse: collapse; margin: 8px 0 16px; background: white; }}
table.metrics th, table.metrics td {{ padding: 4px 12px; border-bottom: 1px solid #e0e0e0; text-align: right; }}
table.metrics th:first-child, table.metrics td:first-child {{ text-align: left; }}
.legend {{ margin: 12px 0 20px; color: {MUTED}; }} .legend span {{ margin-right: 10px; }}
.clip {{ background: white; border: 1px solid #e0e0e0; border-radius: 8px; padding: 10px 12px; margin: 0 0 14px; }}
.clip header {{ display: flex; justify-content: space-between; font-size: 14px; margin-bottom: 6px; }}
.clipid {{ font-family: "DejaVu Sans Mono", monospace; font-weight: 600; }} .scores {{ color: {MUTED}; }}
img.frames {{ display: block; max-width: 100%; height: auto; border-radius: 4px; }}
.noframes {{ color: {MUTED}; font-style: italic; padding: 8px 0; }}
.body {{ display: flex; gap: 16px; align-items: flex-start; margin-top: 8px; }}
img.actions {{ flex: none; }}
.text {{ flex: 1; min-width: 0; }} .scene {{ margin: 0 0 6px; }} .error {{ margin: 0 0 6px; color: {FP}; }}
.reason {{ display: inline-block; border-radius: 12px; padding: 2px 9px; margin: 0 5px 5px 0; font-size: 13px;
           border: 1px solid; }}
.reason.tp {{ color: white; background: {TP}; border-color: {TP}; }}
.reason.fp {{ color: white; background: {FP}; border-color: {FP}; }}
.reason.missed {{ color: #616161; background: #eeeeee; border: 1px dashed {MISSED}; }}
.none {{ color: {MUTED}; font-size: 13px; }}
details {{ margin-top: 4px; font-size: 12px; color: {MUTED}; }}
pre {{ white-space: pre-wrap; word-break: break-word; background: #f5f5f5; padding: 6px; border-radius: 4px; }}
"""


def _metrics_table(metrics: Mapping[str, Any]) -> str:
    keys = ("f1_all", "mf1", "micro_f1", "exact_match", "accuracy")
    head = "".join(f"<th>{k}</th>" for k in keys)
    rows = "".join(
        f"<tr><td>{group}</td>" + "".join(f"<td>{metrics[group][k]:.4f}</td>" for k in keys) + "</tr>"
        for group in ("actions", "reasons")
    )
    return f'<table class="metrics"><tr><th></th>{head}</tr>{rows}</table>'


def _save(img: Image.Image, path: Path) -> str:
    img.save(path)
    return f"{IMAGES_DIR}/{path.name}"


def _html_size(img: Image.Image) -> str:
    return f'width="{img.width // _SCALE}" height="{img.height // _SCALE}"'


def render_report(
    records: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, Any],
    out_dir: str | Path,
    frames: FrameSource | None = None,
    samples: int = 48,
    seed: int = 0,
    title: str = "vlmrl-trl evaluation",
) -> Path:
    """Write ``out_dir/report.html`` and its PNGs in ``out_dir/report/`` for a seeded sample of ``samples``
    records (as read by :func:`vlmrl_trl.metrics.read_predictions`); ``frames`` finds a record's frames."""
    if samples < 1:
        raise ValueError(f"the report needs at least one sampled clip, got samples={samples}")
    out = Path(out_dir)
    images = out / IMAGES_DIR
    images.mkdir(parents=True, exist_ok=True)
    for old in images.glob("*.png"):  # a report of an earlier run must not leave stale images behind
        old.unlink()
    bars = draw_f1_bars(metrics)
    bars_src = _save(bars, images / "f1_bars.png")
    picked = sample_indices(len(records), samples, seed)
    cards = []
    for i in picked:
        rec = records[i]
        parsed = parse_decision(rec["text"])
        pred_bits = parsed.action_bits() if isinstance(parsed, Decision) else None
        # One image per distinct (G, P) pair, shared by the clips that have it.
        name = (
            f"actions_G{''.join(map(str, rec['actions']))}_P{''.join(map(str, pred_bits)) if pred_bits else 'x'}.png"
        )
        actions_img = draw_actions(rec["actions"], pred_bits)
        actions_src = f"{IMAGES_DIR}/{name}" if (images / name).is_file() else _save(actions_img, images / name)
        clip_frames = frames(rec) if frames is not None else None
        frames_attrs = None
        if clip_frames:
            strip = draw_frames(clip_frames)
            frames_attrs = f'src="{_save(strip, images / f"clip{i:05d}_frames.png")}" {_html_size(strip)}'
        cards.append(_clip_card(i, rec, parsed, frames_attrs, f'src="{actions_src}" {_html_size(actions_img)}'))
    legend = (
        f'<span style="color:{TRUTH}">&#9632; G: ground-truth action</span>'
        f'<span style="color:{TP}">&#9632; true positive</span><span style="color:{FP}">&#9632; false positive</span>'
        f'<span style="color:{MISSED}">&#9633; missed</span><span>stop sign = stop/slow down</span>'
    )
    n_invalid = sum(not isinstance(parse_decision(r["text"]), Decision) for r in records)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="sub">{metrics["n"]} clips · JSON validity {metrics["json_validity"]:.3f} ({n_invalid} invalid outputs;
strict, nothing but the JSON: {metrics["strict_json_validity"]:.3f}) ·
showing {len(picked)} clips sampled with seed {seed}</p>
{_metrics_table(metrics)}
<img class="bars" src="{bars_src}" {_html_size(bars)} alt="per-class F1 bars">
<p class="legend">{legend}</p>
{"".join(cards)}
</body></html>
"""
    path = out / REPORT_FILE
    path.write_text(page, encoding="utf-8")
    return path


__all__ = ["draw_actions", "draw_f1_bars", "draw_frames", "render_report", "sample_indices"]
