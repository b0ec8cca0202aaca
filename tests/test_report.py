"""The evaluation report shows each sampled clip's frames, G/P action arrows, scenes and colour-coded reasons; the
comparison page sets two runs side by side."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import pytest
from PIL import Image

import vlmrl_trl
from vlmrl_trl.metrics import score_records
from vlmrl_trl.report import (
    FP,
    IMAGES_DIR,
    MISSED,
    TP,
    TRUTH,
    class_names,
    draw_actions,
    draw_f1_bars,
    draw_frames,
    render_comparison,
    render_report,
    sample_indices,
)
from vlmrl_trl.schema import REASON_IDS, render_decision


def _bits(ids, vocabulary=REASON_IDS):
    return [int(v in ids) for v in vocabulary]


def _colour_count(img: Image.Image, hex_colour: str, tol: int = 12) -> int:
    target = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return sum(
        n
        for n, px in img.convert("RGB").getcolors(1 << 20)
        if all(abs(a - b) <= tol for a, b in zip(px, target, strict=True))
    )


def _records():
    # clip-a: right action; reasons follow_traffic right, red_light false positive, road_clear missed.
    a = {
        "clip_id": "clip-a",
        "text": render_decision([1, 0, 0, 0], _bits({"follow_traffic", "red_light"}), scene="a clear road"),
        "actions": [1, 0, 0, 0],
        "reasons": _bits({"follow_traffic", "road_clear"}),
    }
    b = {"clip_id": "clip-b", "text": "no idea", "actions": [0, 1, 0, 0], "reasons": _bits({"obstacle_car"})}
    c = {
        "clip_id": "clip-<c>",
        "text": render_decision([0, 1, 1, 0], _bits({"obstacle_car"})),
        "actions": [0, 1, 0, 0],
        "reasons": _bits({"obstacle_car"}),
    }
    return [a, b, c]


def _frames(rec):
    return None if rec["clip_id"] == "clip-b" else [Image.new("RGB", (64, 36), (40 * k, 90, 160)) for k in range(3)]


def test_report_has_one_block_per_clip_with_its_images(tmp_path):
    records = _records()
    path = render_report(records, score_records(records), tmp_path, frames=_frames, samples=10)
    page = path.read_text()
    assert path == tmp_path / "report.html"
    assert page.count('<section class="clip"') == 3
    for src in re.findall(r'src="([^"]+)"', page):
        assert (tmp_path / src).is_file(), src
    images = tmp_path / IMAGES_DIR
    assert (images / "f1_bars.png").is_file()
    assert sorted(p.name for p in images.glob("*_frames.png")) == ["clip00000_frames.png", "clip00002_frames.png"]
    # One image per distinct (G, P) pair; "x" marks an output that did not parse.
    assert sorted(p.name for p in images.glob("actions_*.png")) == [
        "actions_G0100_P0110.png",
        "actions_G0100_Px.png",
        "actions_G1000_P1000.png",
    ]
    assert "frames not found" in page  # clip-b has no frames on disk
    assert "clip-&lt;c&gt;" in page and "clip-<c>" not in page  # ids are escaped
    assert re.search(r'class="actions"[^>]*alt="G: move forward; P: move forward"', page)
    assert 'alt="G: stop/slow down; P: unparsed output"' in page
    assert "invalid output: no_json" in page


def test_reasons_are_colour_coded(tmp_path):
    records = _records()
    page = render_report(records[:1], score_records(records[:1]), tmp_path).read_text()
    chips = dict((rid, kind) for kind, rid in re.findall(r'class="reason (\w+)" title="(\w+) \(\w+\)"', page))
    assert chips == {"follow_traffic": "tp", "road_clear": "missed", "red_light": "fp"}
    assert page.count('<section class="clip"') == 1
    assert "frames not found" in page  # no frame source given


def test_sampling_is_seeded_and_stale_images_go(tmp_path):
    assert sample_indices(5, 10, seed=0) == [0, 1, 2, 3, 4]
    picked = sample_indices(100, 7, seed=3)
    assert picked == sorted(picked) and len(set(picked)) == 7 and picked == sample_indices(100, 7, seed=3)
    records = _records() * 20
    metrics = score_records(records)
    render_report(records, metrics, tmp_path, frames=_frames, samples=12)
    page = render_report(records, metrics, tmp_path, frames=_frames, samples=4, seed=1).read_text()
    assert page.count('<section class="clip"') == 4
    shown = {int(i) for i in re.findall(r'id="clip-(\d+)"', page)}
    assert shown == set(sample_indices(60, 4, seed=1))
    frames_left = {int(p.name[4:9]) for p in (tmp_path / IMAGES_DIR).glob("*_frames.png")}
    assert frames_left == {i for i in shown if records[i]["clip_id"] != "clip-b"}
    with pytest.raises(ValueError, match="samples"):
        render_report(records, metrics, tmp_path, samples=0)


def test_predicted_arrows_are_highlighted():
    # Truth {forward, stop}; prediction {forward, turn_left}: forward right, turn_left wrong, stop missed.
    img = draw_actions([1, 1, 0, 0], [1, 0, 1, 0])
    assert _colour_count(img, TRUTH) > 0 and _colour_count(img, TP) > 0 and _colour_count(img, FP) > 0
    assert _colour_count(img, MISSED) > 0
    unparsed = draw_actions([1, 1, 0, 0], None)
    assert _colour_count(unparsed, TP) == 0 and _colour_count(unparsed, FP) == 0
    assert _colour_count(unparsed, TRUTH) == pytest.approx(_colour_count(img, TRUTH), rel=0.05)


def test_frames_strip_and_f1_bars():
    strip = draw_frames([Image.new("RGB", (1280, 720)), Image.new("L", (640, 360))])
    assert strip.height == 288 and strip.width > 2 * 500  # two 16:9 tiles at twice the CSS height
    records = _records()
    bars = draw_f1_bars(score_records(records))
    assert bars.width > 1000 and bars.height > 500
    assert _colour_count(bars, TRUTH) > 0  # the action bars


def test_true_scene_beside_the_predicted_and_errors_to_sort_by(tmp_path):
    records = _records()
    records[0] = {**records[0], "true_scene": "a clear road, a green light"}
    page = render_report(records, score_records(records), tmp_path).read_text()
    assert re.search(
        r"<dt>true scene</dt><dd>a clear road, a green light</dd>\s*<dt>predicted</dt><dd>a clear road", page
    )
    assert "no description in the data" in page  # the other clips have none
    cards = dict(re.findall(r'id="clip-(\d+)" ([^>]*)>', page))
    assert 'data-badactions="0"' in cards["0"] and 'data-badreasons="1"' in cards["0"]
    assert 'data-invalid="1"' in cards["1"] and 'data-action="0.0000"' in cards["1"]
    assert '<select id="sort">' in page and '<select id="filter">' in page and "<script>" in page
    assert "http" not in page.replace("http-equiv", "")  # nothing to fetch: works offline


def test_chips_and_bars_use_the_same_labels_from_the_metrics():
    metrics = score_records(_records())
    names = dict(class_names(metrics, "reasons"))
    assert list(names) == list(metrics["reasons"]["per_class"])
    assert names["red_light"] == "the traffic light is red"
    metrics["reasons"]["labels"] = {"red_light": "red light ahead"}  # a label set that names its classes
    assert dict(class_names(metrics, "reasons"))["red_light"] == "red light ahead"


def test_compare_page_sets_per_class_f1_side_by_side_and_lists_the_changed_clips(tmp_path):
    before = _records()
    after = [dict(r) for r in before]
    after[1]["text"] = render_decision([0, 1, 0, 0], _bits({"obstacle_car"}), scene="a car ahead")  # now right
    after[2]["text"] = "broken"  # now invalid
    path = render_comparison(
        before, after, score_records(before), score_records(after), tmp_path, labels=("SFT", "GRPO Stage 2")
    )
    page = path.read_text()
    assert path == tmp_path / "compare.html"
    assert "SFT against GRPO Stage 2 on 3 shared clips" in page
    assert "2 changed their answer: 1 got\nbetter, 1 worse" in page
    row = re.search(r'<td>actions f1_all</td><td>([\d.]+)</td><td>([\d.]+)</td><td class="up">', page)
    assert row and float(row[2]) > float(row[1])
    assert re.search(
        r'<td title="obstacle_car">obstacle: car</td>(<td>[\d.]+</td>){2}<td class="">\+0.000</td><td>2</td>', page
    )
    shown = re.findall(r'<span class="clipid">([^<]+)</span>', page)
    assert shown == ["clip-&lt;c&gt;", "clip-b"]  # the clip that got worse first; the unchanged clip-a not at all
    for src in re.findall(r'src="([^"]+)"', page):
        assert (tmp_path / src).is_file(), src
    with pytest.raises(ValueError, match="share no clip_id"):
        render_comparison(before, [{**r, "clip_id": "x"} for r in after], score_records(before),
                          score_records(after), tmp_path)  # fmt: skip


def test_the_page_templates_ship_as_package_data():
    package = Path(vlmrl_trl.__file__).parent
    pyproject = tomllib.loads((package.parent / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["vlmrl_trl"]
    templates = [p.relative_to(package).as_posix() for p in (package / "templates").iterdir()]
    assert {"base.html.j2", "report.html.j2", "compare.html.j2"} <= {Path(t).name for t in templates}
    assert all(any(fnmatch.fnmatch(t, g) for g in globs) for t in templates), (templates, globs)
