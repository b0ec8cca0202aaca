"""Visual evaluation reports: static HTML pages with PNG images and a little inline script, viewable offline.

``report.html`` shows, for a sampled page of clips, the frames, the ground-truth (G) and predicted (P) actions as
four arrows, the true and predicted scene descriptions, and the reasons colour-coded (true positive green, false
positive red, missed gray); above them, the headline metrics and per-class F1 bars, and controls that sort and
filter the clips by their errors. ``compare.html`` sets two runs side by side (e.g. SFT and an RL stage): per-class
F1 of each, and the clips whose answer changed. Class names come from the metrics (their ``per_class`` keys), with
the label set's labels (``label_set``, BDD-OIA's by default) where it has them. Drawing uses Pillow only.
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


def _reason_chips(true_bits: Sequence[int], decision: Decision | None, names: Sequence[tuple[str, str]]) -> str:
    pred = set(decision.reasons) if decision is not None else set()
    chips = []
    for bit, (rid, label) in enumerate(names):
        truth, said = bool(true_bits[bit]), rid in pred
        kind = "tp" if truth and said else "fp" if said else "missed" if truth else None
        if kind:
            chips.append(f'<span class="reason {kind}" title="{rid} ({kind})">{html.escape(label)}</span>')
    return "".join(chips) or '<span class="none">no reasons, true or predicted</span>'


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

    def scene(self) -> str:
        if self.decision is None:
            return f'<span class="error">invalid output: {html.escape(str(self.parsed))}</span>'
        return html.escape(self.decision.scene) or "<i>(no scene text)</i>"


def _names(metrics: Mapping[str, Any], label_set: LabelSet) -> dict[str, list[tuple[str, str]]]:
    return {group: class_names(metrics, group, label_set) for group in GROUPS}


def _action_names(bits: Sequence[int], names: Sequence[tuple[str, str]]) -> str:
    return ", ".join(label for (_, label), b in zip(names, bits, strict=True) if b) or "none"


def _true_scene(rec: Mapping[str, Any]) -> str:
    scene = rec.get("true_scene")
    return html.escape(scene) if isinstance(scene, str) and scene else "<i>no description in the data</i>"


def _clip_card(
    i: int, rec: Mapping[str, Any], answer: _Answer, frames_img: str | None, actions_img: str, names: dict
) -> str:
    clip = html.escape(str(rec.get("clip_id", f"#{i}")))
    truth_names = _action_names(rec["actions"], names["actions"])
    pred_names = _action_names(answer.actions, names["actions"]) if answer.decision else "unparsed output"
    frames = (
        f'<img class="frames" {frames_img} alt="frames of {clip}">'
        if frames_img
        else '<div class="noframes">frames not found</div>'
    )
    scores = f"action F1 {answer.action_f1:.2f} · reason F1 {answer.reason_f1:.2f}"
    data = (
        f'data-order="{i}" data-action="{answer.action_f1:.4f}" data-reason="{answer.reason_f1:.4f}" '
        f'data-invalid="{int(answer.decision is None)}" data-badactions="{int(not answer.actions_right)}" '
        f'data-badreasons="{int(not answer.reasons_right)}"'
    )
    return f"""
<section class="clip" id="clip-{i}" {data}>
  <header><span class="clipid">{clip}</span><span class="scores">{scores}</span></header>
  {frames}
  <div class="body">
    <img class="actions" {actions_img} alt="G: {html.escape(truth_names)}; P: {html.escape(pred_names)}"
         title="G: {html.escape(truth_names)} | P: {html.escape(pred_names)}">
    <div class="text">
      <dl class="scenes"><dt>true scene</dt><dd>{_true_scene(rec)}</dd>
      <dt>predicted</dt><dd>{answer.scene()}</dd></dl>
      <div class="reasons">{_reason_chips(rec["reasons"], answer.decision, names["reasons"])}</div>
    </div>
  </div>
  <details><summary>raw output</summary><pre>{html.escape(rec["text"])}</pre></details>
</section>"""


_CSS = f"""
body {{ font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: {INK}; margin: 24px auto;
       max-width: 1180px; padding: 0 16px; background: #fafafa; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }} h2 {{ font-size: 17px; margin: 22px 0 6px; }}
.sub {{ color: {MUTED}; margin: 0 0 16px; }}
table.metrics {{ border-collapse: collapse; margin: 8px 0 16px; background: white; }}
table.metrics th, table.metrics td {{ padding: 4px 12px; border-bottom: 1px solid #e0e0e0; text-align: right; }}
table.metrics th:first-child, table.metrics td:first-child {{ text-align: left; }}
td.up {{ color: {TP}; font-weight: 600; }} td.down {{ color: {FP}; font-weight: 600; }}
.legend {{ margin: 12px 0 12px; color: {MUTED}; }} .legend span {{ margin-right: 10px; }}
.tools {{ position: sticky; top: 0; background: #fafafa; padding: 8px 0; margin-bottom: 8px; z-index: 1;
          border-bottom: 1px solid #e0e0e0; }}
.tools label {{ margin-right: 14px; }} .tools select {{ font: inherit; }} #shown {{ color: {MUTED}; }}
.clip {{ background: white; border: 1px solid #e0e0e0; border-radius: 8px; padding: 10px 12px; margin: 0 0 14px; }}
.clip header {{ display: flex; justify-content: space-between; font-size: 14px; margin-bottom: 6px; }}
.clipid {{ font-family: "DejaVu Sans Mono", monospace; font-weight: 600; }} .scores {{ color: {MUTED}; }}
img.frames {{ display: block; max-width: 100%; height: auto; border-radius: 4px; }}
.noframes {{ color: {MUTED}; font-style: italic; padding: 8px 0; }}
.body {{ display: flex; gap: 16px; align-items: flex-start; margin-top: 8px; flex-wrap: wrap; }}
img.actions {{ flex: none; }}
.text {{ flex: 1; min-width: 280px; }} .error {{ color: {FP}; }}
dl.scenes {{ display: grid; grid-template-columns: max-content 1fr; gap: 2px 10px; margin: 0 0 6px; }}
dl.scenes dt {{ color: {MUTED}; font-size: 13px; padding-top: 1px; }} dl.scenes dd {{ margin: 0; }}
.reason {{ display: inline-block; border-radius: 12px; padding: 2px 9px; margin: 0 5px 5px 0; font-size: 13px;
           border: 1px solid; }}
.reason.tp {{ color: white; background: {TP}; border-color: {TP}; }}
.reason.fp {{ color: white; background: {FP}; border-color: {FP}; }}
.reason.missed {{ color: #616161; background: #eeeeee; border: 1px dashed {MISSED}; }}
.none {{ color: {MUTED}; font-size: 13px; }}
.runs {{ display: grid; grid-template-columns: 1fr 1fr; gap: 12px; margin-top: 8px; }}
.run h3 {{ font-size: 14px; margin: 0 0 4px; color: {MUTED}; }}
details {{ margin-top: 4px; font-size: 12px; color: {MUTED}; }}
pre {{ white-space: pre-wrap; word-break: break-word; background: #f5f5f5; padding: 6px; border-radius: 4px; }}
"""

# Sorts the clip cards by a data-* attribute (ascending; "-name" descending) and shows those a filter keeps.
_SCRIPT = """
<script>
(function () {
  const list = document.getElementById("clips"), cards = Array.from(list.children);
  const sort = document.getElementById("sort"), show = document.getElementById("filter");
  function update() {
    const key = sort.value.replace(/^-/, ""), sign = sort.value.startsWith("-") ? -1 : 1;
    cards.slice().sort((a, b) => sign * (a.dataset[key] - b.dataset[key]) || a.dataset.order - b.dataset.order)
      .forEach((card) => list.appendChild(card));
    let shown = 0;
    cards.forEach((card) => {
      const keep = show.value === "all" || card.dataset[show.value] === "1";
      card.hidden = !keep;
      shown += keep;
    });
    document.getElementById("shown").textContent = shown + " of " + cards.length + " clips shown";
  }
  sort.addEventListener("change", update);
  show.addEventListener("change", update);
  update();
})();
</script>"""


def _tools(sorts: Sequence[tuple[str, str]], filters: Sequence[tuple[str, str]]) -> str:
    """The sort and filter controls: (data attribute, text) pairs; filters keep cards whose attribute is 1."""
    sort = "".join(f'<option value="{value}">{text}</option>' for value, text in sorts)
    keep = "".join(f'<option value="{value}">{text}</option>' for value, text in [("all", "all clips"), *filters])
    return (
        f'<div class="tools"><label>sort <select id="sort">{sort}</select></label>'
        f'<label>show <select id="filter">{keep}</select></label><span id="shown"></span></div>'
    )


def _metrics_table(metrics: Mapping[str, Any]) -> str:
    keys = ("f1_all", "mf1", "micro_f1", "exact_match", "accuracy")
    head = "".join(f"<th>{k}</th>" for k in keys)
    rows = "".join(
        f"<tr><td>{group}</td>" + "".join(f"<td>{metrics[group][k]:.4f}</td>" for k in keys) + "</tr>"
        for group in GROUPS
    )
    return f'<table class="metrics"><tr><th></th>{head}</tr>{rows}</table>'


def _save(img: Image.Image, path: Path) -> str:
    img.save(path)
    return f"{path.parent.name}/{path.name}"


def _html_size(img: Image.Image) -> str:
    return f'width="{img.width // _SCALE}" height="{img.height // _SCALE}"'


def _fresh_images(folder: Path) -> Path:
    """``folder``, created, without the PNGs of an earlier run (which must not be left behind)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    return folder


def _actions_image(images: Path, names: dict, true_bits: Sequence[int], pred_bits: Sequence[int] | None) -> str:
    """The G/P arrow pads as an ``<img>``'s attributes; one PNG per distinct (G, P) pair, shared by its clips."""
    img = draw_actions(true_bits, pred_bits, [cid for cid, _ in names["actions"]])
    name = f"actions_G{''.join(map(str, true_bits))}_P{''.join(map(str, pred_bits)) if pred_bits else 'x'}.png"
    src = f"{images.name}/{name}" if (images / name).is_file() else _save(img, images / name)
    return f'src="{src}" {_html_size(img)}'


def _frames_image(images: Path, name: str, frames: Sequence[Image.Image] | None) -> str | None:
    if not frames:
        return None
    strip = draw_frames(frames)
    return f'src="{_save(strip, images / name)}" {_html_size(strip)}'


def _page(title: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
{body}
</body></html>
"""


_LEGEND = (
    f'<span style="color:{TRUTH}">&#9632; G: ground-truth action</span>'
    f'<span style="color:{TP}">&#9632; true positive</span><span style="color:{FP}">&#9632; false positive</span>'
    f'<span style="color:{MISSED}">&#9633; missed</span><span>stop sign = stop/slow down</span>'
)


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
    bars = draw_f1_bars(metrics)
    bars_src = _save(bars, images / "f1_bars.png")
    picked = sample_indices(len(records), samples, seed)
    cards = []
    for i in picked:
        rec = records[i]
        answer = _Answer(rec, names, label_set)
        actions_img = _actions_image(images, names, rec["actions"], answer.actions if answer.decision else None)
        frames_img = _frames_image(images, f"clip{i:05d}_frames.png", frames(rec) if frames is not None else None)
        cards.append(_clip_card(i, rec, answer, frames_img, actions_img, names))
    n_invalid = sum(not isinstance(parse_decision(r["text"], label_set), Decision) for r in records)
    tools = _tools(
        [("order", "clip order"), ("action", "worst action F1 first"), ("reason", "worst reason F1 first")],
        [("badactions", "wrong actions"), ("badreasons", "wrong reasons"), ("invalid", "invalid outputs")],
    )
    body = f"""<p class="sub">{metrics["n"]} clips · JSON validity {metrics["json_validity"]:.3f} ({n_invalid} invalid
outputs; strict, nothing but the JSON: {metrics["strict_json_validity"]:.3f}) ·
showing {len(picked)} clips sampled with seed {seed}</p>
{_metrics_table(metrics)}
<img class="bars" src="{bars_src}" {_html_size(bars)} alt="per-class F1 bars">
<p class="legend">{_LEGEND}</p>
{tools}
<div id="clips">{"".join(cards)}</div>
{_SCRIPT}"""
    path = out / REPORT_FILE
    path.write_text(_page(title, body), encoding="utf-8")
    return path


def _change_cell(before: float, after: float) -> str:
    delta = after - before
    kind = "up" if delta >= 0.0005 else "down" if delta <= -0.0005 else ""
    return f'<td class="{kind}">{delta:+.3f}</td>'


def _compare_tables(before: Mapping[str, Any], after: Mapping[str, Any], labels: tuple[str, str]) -> str:
    """The headline metrics and every class's F1 of two runs side by side, with the change."""
    head = f"<tr><th></th><th>{html.escape(labels[0])}</th><th>{html.escape(labels[1])}</th><th>change</th>"
    rows = [
        f"<tr><td>{group} {key}</td><td>{before[group][key]:.3f}</td><td>{after[group][key]:.3f}</td>"
        f"{_change_cell(before[group][key], after[group][key])}</tr>"
        for group in GROUPS
        for key in ("f1_all", "mf1", "exact_match")
    ]
    for key in ("json_validity", "strict_json_validity"):
        if key in before and key in after:
            rows.append(
                f"<tr><td>{key}</td><td>{before[key]:.3f}</td><td>{after[key]:.3f}</td>"
                f"{_change_cell(before[key], after[key])}</tr>"
            )
    tables = [f'<table class="metrics">{head}</tr>{"".join(rows)}</table>']
    for group in GROUPS:
        lines = "".join(
            f'<tr><td title="{cid}">{html.escape(label)}</td><td>{before[group]["per_class"][cid]:.3f}</td>'
            f"<td>{after[group]['per_class'][cid]:.3f}</td>"
            f"{_change_cell(before[group]['per_class'][cid], after[group]['per_class'][cid])}"
            f"<td>{before[group]['support'][cid]}</td></tr>"
            for cid, label in class_names(before, group)
        )
        title = f"<h2>{group.capitalize()}: per-class F1</h2>"
        tables.append(f'{title}<table class="metrics">{head}<th>support</th></tr>{lines}</table>')
    return "".join(tables)


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
    frames_img: str | None,
    names: dict,
) -> str:
    clip = html.escape(str(rec.get("clip_id", f"#{i}")))
    score = [(a.action_f1 + a.reason_f1) / 2 for a in answers]
    delta = score[1] - score[0]
    runs = []
    for label, answer in zip(labels, answers, strict=True):
        pads = _actions_image(images, names, rec["actions"], answer.actions if answer.decision else None)
        runs.append(
            f'<div class="run"><h3>{html.escape(label)} · action F1 {answer.action_f1:.2f} · reason F1 '
            f'{answer.reason_f1:.2f}</h3><img class="actions" {pads} alt="{html.escape(label)} actions">'
            f'<p>{answer.scene()}</p><div class="reasons">'
            f"{_reason_chips(rec['reasons'], answer.decision, names['reasons'])}</div></div>"
        )
    frames = f'<img class="frames" {frames_img} alt="frames of {clip}">' if frames_img else ""
    data = f'data-order="{i}" data-delta="{delta:.4f}" data-better="{int(delta > 0)}" data-worse="{int(delta < 0)}"'
    verdict = "better" if delta > 0 else "worse" if delta < 0 else "as good"
    return f"""
<section class="clip" {data}>
  <header><span class="clipid">{clip}</span><span class="scores">{verdict}: mean of action and reason F1
  {score[0]:.2f} &rarr; {score[1]:.2f}</span></header>
  {frames}
  <dl class="scenes"><dt>true scene</dt><dd>{_true_scene(rec)}</dd><dt>true actions</dt>
  <dd>{html.escape(_action_names(rec["actions"], names["actions"]))}</dd></dl>
  <div class="runs">{"".join(runs)}</div>
</section>"""


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
    better, worse = sum(d > 0 for d in deltas), sum(d < 0 for d in deltas)
    order = sorted(range(len(changed)), key=lambda k: deltas[k])[:max_clips]
    cards = []
    for n, k in enumerate(order):
        rec, a, b = changed[k]
        frames_img = _frames_image(images, f"clip{n:05d}_frames.png", frames(rec) if frames is not None else None)
        cards.append(_change_card(n, rec, (a, b), labels, images, frames_img, names))
    tools = _tools(
        [("delta", "got worse first"), ("-delta", "got better first")],
        [("worse", "got worse"), ("better", "got better")],
    )
    only = len(before) + len(after) - 2 * shared
    body = f"""<p class="sub">{html.escape(labels[0])} against {html.escape(labels[1])} on {shared} shared clips
{f"({only} clips in one run only, left out)" if only else ""} · {len(changed)} changed their answer: {better} got
better, {worse} worse, {len(changed) - better - worse} as good (mean of the clip's action and reason F1) ·
showing {len(cards)}</p>
{_compare_tables(before_metrics, after_metrics, labels)}
<h2>Clips whose answer changed</h2>
<p class="legend">{_LEGEND}</p>
{tools if cards else ""}
<div id="clips">{"".join(cards) or '<p class="none">no clip changed its answer</p>'}</div>
{_SCRIPT if cards else ""}"""
    path = out / COMPARE_FILE
    path.write_text(_page(f"{labels[0]} vs {labels[1]}", body), encoding="utf-8")
    return path


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
