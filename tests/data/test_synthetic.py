"""The synthetic clip generator: determinism, BDD-OIA label rules, motion-only labels, layout and balance."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from vlmrl_trl.data import generate_synthetic, load_bddoia, make_clip, render_clip, sample_scene, scene_labels
from vlmrl_trl.data.synthetic import (
    INFO_FILE,
    SCALES,
    Obstacle,
    Pedestrian,
    Rider,
    Scene,
    TrafficLight,
    Vehicle,
    describe_scene,
)
from vlmrl_trl.schema import ACTION_IDS, REASON_IDS, Decision, reason_action_conflicts


def _ids(scene: Scene) -> tuple[set[str], set[str]]:
    actions, reasons = scene_labels(scene)
    return (
        {ACTION_IDS[i] for i, b in enumerate(actions) if b},
        {REASON_IDS[i] for i, b in enumerate(reasons) if b},
    )


def _road(num_lanes: int = 3, ego_lane: int = 1, inner: str = "dashed", **kwargs) -> Scene:
    lines = ("edge", *([inner] * (num_lanes - 1)), "edge")
    return Scene(num_lanes=num_lanes, ego_lane=ego_lane, lines=lines, **kwargs)


def _car(rel_lane: int = 0, z: float = 14.0, **kwargs) -> Vehicle:
    defaults = dict(offset=0.0, v_rel=0.0, v_lat=0.0, kind="car", color_name="white", color=(236, 236, 232))
    return Vehicle(rel_lane, z, **(defaults | kwargs))


def _ped(role: str, x: float, v_x: float = 0.0, z: float = 9.0) -> Pedestrian:
    return Pedestrian(x, z, v_x, 0.0, role, (220, 60, 160), (200, 150, 110))


def _frame_bytes(frame) -> bytes:
    return np.asarray(frame).tobytes()


def test_same_seed_same_clip_and_different_seed_different_clip() -> None:
    a, b = make_clip(3, "train", 5), make_clip(3, "train", 5)
    assert [_frame_bytes(f) for f in a.frames] == [_frame_bytes(f) for f in b.frames]
    assert (a.actions, a.reasons, a.description) == (b.actions, b.reasons, b.description)
    c = make_clip(4, "train", 5)
    assert _frame_bytes(c.frames[-1]) != _frame_bytes(a.frames[-1])


def test_red_light_means_stop_with_reason_red_light() -> None:
    scene = _road(light=TrafficLight("red", None, None, 0.7, 0.05))
    actions, reasons = _ids(scene)
    assert "stop" in actions and "move_forward" not in actions and "red_light" in reasons
    scene.light = TrafficLight("green", None, None, 0.7, 0.05)
    actions, reasons = _ids(scene)
    assert "move_forward" in actions and {"green_light", "road_clear"} <= reasons


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda s: s.vehicles.append(_car(z=6.0)), "obstacle_car"),
        (lambda s: s.vehicles.append(_car(z=12.0, braking=True)), "obstacle_car"),
        (lambda s: s.pedestrians.append(_ped("crossing", 0.3, v_x=1.2)), "obstacle_person"),
        (lambda s: s.riders.append(Rider(0, 9.0, 0.0, 0.0, "bicycle", (40, 160, 230))), "obstacle_rider"),
        (lambda s: s.obstacles.append(Obstacle(0, 9.0, "cones")), "obstacle_other"),
        (lambda s: setattr(s, "stop_sign_z", 11.0), "traffic_sign"),
    ],
)
def test_each_stop_cause_sets_stop_and_its_reason(change, reason: str) -> None:
    scene = _road()
    change(scene)
    actions, reasons = _ids(scene)
    assert actions >= {"stop"} and "move_forward" not in actions and reason in reasons


def test_a_far_car_ahead_is_followed_not_an_obstacle() -> None:
    actions, reasons = _ids(_road(vehicles=[_car(z=15.0)]))
    assert "move_forward" in actions and "follow_traffic" in reasons and "obstacle_car" not in reasons


def test_lane_lines_and_road_edges_forbid_turns_with_their_reasons() -> None:
    actions, reasons = _ids(_road(num_lanes=2, ego_lane=1, inner="solid"))
    assert not actions & {"turn_left", "turn_right"}
    assert {"solid_left_line", "no_right_lane"} <= reasons
    actions, reasons = _ids(_road(num_lanes=2, ego_lane=0, inner="dashed"))
    assert "turn_right" in actions and "turn_left" not in actions and "no_left_lane" in reasons
    actions, reasons = _ids(_road(num_lanes=3, ego_lane=1, inner="dashed", vehicles=[_car(rel_lane=1, z=8.0)]))
    assert "turn_left" in actions and "turn_right" not in actions and "obstacle_right_lane" in reasons


def test_permissive_reasons_override_prohibiting_ones() -> None:
    scene = _road(num_lanes=2, ego_lane=0, left_turn_lane=True)
    actions, reasons = _ids(scene)
    assert "turn_left" in actions and "on_left_turn_lane" in reasons and "no_left_lane" not in reasons
    scene = _road(num_lanes=1, ego_lane=0, light=TrafficLight("red", None, True, 0.7, 0.05))
    actions, reasons = _ids(scene)
    assert {"stop", "turn_right"} <= actions and {"red_light", "light_allows_right"} <= reasons


def test_front_car_turning_is_decidable_only_from_motion() -> None:
    turning = _road(vehicles=[_car(z=13.0, offset=-0.3, v_lat=-1.4)], ego_speed=4.0)
    straight = dataclasses.replace(turning, vehicles=[_car(z=13.0, offset=-0.3, v_lat=0.0)])
    assert "front_car_turning_left" in _ids(turning)[1]
    assert "front_car_turning_left" not in _ids(straight)[1]
    a, b = render_clip(turning), render_clip(straight)
    assert _frame_bytes(a[-1]) == _frame_bytes(b[-1])  # the annotated frame alone cannot tell them apart
    assert _frame_bytes(a[0]) != _frame_bytes(b[0])


def test_pedestrian_stepping_into_the_road_is_decidable_only_from_motion() -> None:
    edge = _road(num_lanes=1, ego_lane=0).boundary_x(1)
    stepping = _road(num_lanes=1, ego_lane=0, pedestrians=[_ped("stepping_in", edge + 0.2, v_x=-1.2)])
    leaving = _road(num_lanes=1, ego_lane=0, pedestrians=[_ped("curb", edge + 0.2, v_x=1.2)])
    assert "obstacle_person" in _ids(stepping)[1] and "stop" in _ids(stepping)[0]
    assert "obstacle_person" not in _ids(leaving)[1] and "move_forward" in _ids(leaving)[0]
    a, b = render_clip(stepping), render_clip(leaving)
    assert _frame_bytes(a[-1]) == _frame_bytes(b[-1])
    assert _frame_bytes(a[0]) != _frame_bytes(b[0])


def test_generated_labels_never_contradict_the_reason_action_rules() -> None:
    for i in range(300):
        actions, reasons = scene_labels(sample_scene(np.random.default_rng([7, i])))
        decision = Decision.from_bits(actions, reasons)
        assert reason_action_conflicts(decision) == []
        assert actions[0] + actions[1] == 1 and sum(reasons) >= 1


def test_every_action_and_nearly_every_reason_appears() -> None:
    action_counts, reason_counts = np.zeros(4), np.zeros(21)
    for i in range(600):
        actions, reasons = scene_labels(sample_scene(np.random.default_rng([11, i])))
        action_counts += actions
        reason_counts += reasons
    assert (action_counts > 0).all() and 0.3 < action_counts[1] / 600 < 0.7
    assert (reason_counts > 0).sum() == 21


def test_single_frame_clips_carry_no_motion_only_label() -> None:
    for i in range(300):
        scene = sample_scene(np.random.default_rng([5, i]), motion=False)
        assert all(abs(v.v_lat) < 0.5 for v in scene.vehicles)
        assert all(p.role != "stepping_in" for p in scene.pedestrians)


def test_descriptions_are_short_varied_and_true_to_the_scene() -> None:
    scene = _road(light=TrafficLight("red", True, None, 0.7, 0.05), vehicles=[_car(z=6.0, color_name="blue")])
    texts = {describe_scene(scene, np.random.default_rng(i)) for i in range(20)}
    assert len(texts) > 3
    for text in texts:
        assert len(text.split()) < 40 and "red" in text and "blue" in text and "left arrow" in text
    for i in range(200):
        rng = np.random.default_rng([9, i])
        assert len(describe_scene(sample_scene(rng), rng).split()) < 40


def test_render_clip_honours_frame_count_and_size() -> None:
    frames = render_clip(_road(), num_frames=2, image_size=64)
    assert len(frames) == 2 and {f.size for f in frames} == {(64, 64)} and frames[0].mode == "RGB"


def test_generate_synthetic_writes_the_official_layout_read_by_the_loader(tmp_path: Path) -> None:
    out = generate_synthetic(tmp_path / "synth", train=6, val=3, test=3, seed=2)
    actions = json.loads((out / "train_25k_images_actions.json").read_text())
    assert [a["category"] for a in actions["annotations"]] and all(
        len(a["category"]) == 4 for a in actions["annotations"]
    )
    ds = load_bddoia(out, "train")
    assert len(ds) == 6 and set(ds["num_frames"]) == {4} and all(ds["scene"])
    first = ds[0]
    assert len(first["images"]) == 4 and first["images"][-1].size == (128, 128)
    last_frame = (out / "frames" / first["clip_id"] / "3.jpg").read_bytes()
    assert (out / "data" / first["file_name"]).read_bytes() == last_frame  # data/ holds the annotated frame
    info = json.loads((out / INFO_FILE).read_text())
    assert info["splits"]["train"]["action_counts"] == [sum(a[i] for a in ds["actions"]) for i in range(4)]


def test_same_seed_writes_identical_sets_and_splits_share_no_clip(tmp_path: Path) -> None:
    def digests(root: Path) -> dict[str, str]:
        return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted((root / "data").iterdir())}

    a = generate_synthetic(tmp_path / "a", train=20, val=10, test=10, seed=1)
    b = generate_synthetic(tmp_path / "b", train=20, val=10, test=10, seed=1)
    assert digests(a) == digests(b)
    assert (a / "val_descriptions.json").read_text() == (b / "val_descriptions.json").read_text()
    by_split: dict[str, set[str]] = {"train": set(), "val": set(), "test": set()}
    for name, digest in digests(a).items():
        by_split[name.split("_")[1]].add(digest)
    assert not by_split["train"] & by_split["val"] and not by_split["train"] & by_split["test"]
    assert not by_split["val"] & by_split["test"]


def test_refuses_to_write_over_other_data_unless_asked(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="holds no synthetic_info.json"):
        generate_synthetic(tmp_path / "real", train=1, val=1, test=1)
    out = generate_synthetic(tmp_path / "synth", train=2, val=1, test=1)
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_synthetic(out, train=1, val=1, test=1)
    generate_synthetic(out, train=1, val=1, test=1, overwrite=True)
    assert len(load_bddoia(out, "train")) == 1 and len(list((out / "frames").iterdir())) == 3


def test_far_scale_clips_are_bit_identical_to_the_first_world() -> None:
    # Digest of these clips as the single-module generator (before the near scale existed) wrote them.
    h = hashlib.sha256()
    for split, index, num_frames in (("train", 0, 4), ("train", 7, 4), ("val", 3, 4), ("test", 11, 1)):
        clip = make_clip(0, split, index, num_frames=num_frames, scale="far")
        for frame in clip.frames:
            h.update(frame.tobytes())
        h.update(repr((clip.actions, clip.reasons, clip.description)).encode())
    assert h.hexdigest() == "aa9b1278201a51cbcbd34f0189acf0c6fa7ac040fd5baa935cae16d8268aa364"


def _changed_box(with_cue: Scene, without: Scene) -> tuple[int, int]:
    """Width and height (px) of the region of the last 128 px frame that the cue changes."""
    diff = np.abs(_pixels(with_cue) - _pixels(without)).sum(axis=2) > 30
    ys, xs = np.nonzero(diff)
    return int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def _pixels(scene: Scene) -> np.ndarray:
    return np.asarray(render_clip(scene, num_frames=1)[-1], dtype=np.int32)


@pytest.mark.parametrize(
    "cue",
    [
        {"light": TrafficLight("red", None, None, 0.6, 0.05)},
        {"stop_sign_z": 12.0},
        {"pedestrians": [_ped("curb", 3.2, z=12.0)]},
        {"riders": [Rider(0, 10.0, 0.0, 0.0, "bicycle", (220, 60, 160))]},
    ],
    ids=["traffic_light", "stop_sign", "pedestrian", "rider"],
)
def test_near_scale_cues_span_several_image_tokens_and_far_ones_about_one(cue: dict) -> None:
    sizes = {}
    for scale in ("near", "far"):
        empty = _road(scale=scale)
        sizes[scale] = _changed_box(dataclasses.replace(empty, **cue), empty)
    assert min(sizes["near"]) >= 22 and max(sizes["near"]) >= 50  # several 32 px tokens of the 128 px frame
    assert min(sizes["far"]) <= 32 and sizes["near"][1] > 1.8 * sizes["far"][1]


@pytest.mark.parametrize("scale", sorted(SCALES))
def test_both_scales_keep_every_action_and_reason_and_the_label_logic(scale: str) -> None:
    action_counts, reason_counts = np.zeros(4), np.zeros(21)
    for i in range(1000):
        scene = sample_scene(np.random.default_rng([11, i]), scale=scale)
        actions, reasons = scene_labels(scene)
        assert reason_action_conflicts(Decision.from_bits(actions, reasons)) == []
        action_counts += actions
        reason_counts += reasons
    assert (action_counts > 0).all() and (reason_counts > 0).sum() == 21


def test_scale_changes_the_drawing_not_the_scene_or_its_labels() -> None:
    near, far = make_clip(0, "train", 2), make_clip(0, "train", 2, scale="far")
    assert near.scene.scale == "near" and far.scene.scale == "far"  # near is the default
    assert (near.actions, near.reasons, near.scene.num_lanes) == (far.actions, far.reasons, far.scene.num_lanes)


@pytest.mark.parametrize("scale", sorted(SCALES))
def test_motion_only_labels_need_more_than_one_frame_at_both_scales(scale: str) -> None:
    turning = _road(vehicles=[_car(z=13.0, offset=-0.3, v_lat=-1.4)], ego_speed=4.0, scale=scale)
    straight = dataclasses.replace(turning, vehicles=[_car(z=13.0, offset=-0.3, v_lat=0.0)])
    a, b = render_clip(turning), render_clip(straight)
    assert _frame_bytes(a[-1]) == _frame_bytes(b[-1]) and _frame_bytes(a[0]) != _frame_bytes(b[0])


@pytest.mark.parametrize("scale", sorted(SCALES))
def test_the_data_card_names_the_scale(tmp_path: Path, scale: str) -> None:
    out = generate_synthetic(tmp_path / scale, train=1, val=1, test=1, scale=scale)
    info = json.loads((out / INFO_FILE).read_text())
    assert info["scale"] == scale and info["scale_note"].startswith(f"{scale} field")
