"""The BDD-OIA loader: official split sizes on the shared labels, multi-frame clips, and every bad input."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from bit_cases import BitCase, json_bit_cases

from vlmrl_trl.cli import main
from vlmrl_trl.data import BDDOIADataError, load_bddoia
from vlmrl_trl.sft import SFTScriptArguments, load_clips

A_STOP = [0, 1, 0, 0]
R_RED = [0] * 7 + [1] + [0] * 13


def _labels_by_file(shared: Path, split: str) -> dict[str, tuple[list[int], list[int]]]:
    actions = json.loads((shared / f"{split}_25k_images_actions.json").read_text())
    reasons = {
        r["file_name"]: r["reason"] for r in json.loads((shared / f"{split}_25k_images_reasons.json").read_text())
    }
    by_id = {a["id"]: a["category"] for a in actions["annotations"]}
    return {img["file_name"]: (by_id[img["id"]], reasons[img["file_name"]]) for img in actions["images"]}


@pytest.mark.parametrize(("split", "size"), [("train", 16028), ("val", 2258), ("test", 4548)])
def test_shared_labels_give_official_split_sizes_and_each_clip_its_own_bits(
    placeholder_bddoia_root: Path, shared_labels_dir: Path, split: str, size: int
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # every clip falls back to its single last frame here
        ds = load_bddoia(placeholder_bddoia_root, split, check_images="exists")
    assert len(ds) == size
    expected = _labels_by_file(shared_labels_dir, split)
    columns = ds.select_columns(["file_name", "actions", "reasons"]).to_dict()
    for name, actions, reasons in zip(columns["file_name"], columns["actions"], columns["reasons"], strict=True):
        category, reason = expected[name]
        assert actions == category[:4] and len(category) in (4, 5) and category[4:] != [1]
        assert reasons == reason
    assert set(ds["num_frames"]) == {1} and set(ds["scene"]) == {None}


def test_keep_confuse_keeps_the_flagged_clips_with_a_confuse_column(placeholder_bddoia_root: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load_bddoia(placeholder_bddoia_root, "val", check_images="exists", keep_confuse=True)
    assert len(ds) == 2269 and sum(ds["confuse"]) == 11
    assert all(len(a) == 4 for a in ds["actions"])


def test_decoding_check_accepts_the_placeholder_images(placeholder_bddoia_root: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(load_bddoia(placeholder_bddoia_root, "val", check_images="decode")) == 2258


def test_images_are_stored_as_paths_and_decoded_on_access(make_root) -> None:
    root = make_root({"a.jpg": (A_STOP, R_RED)}, frames={"a": 4})
    ds = load_bddoia(root, "val")
    stored = ds.data.column("images")[0].as_py()
    assert [s["bytes"] for s in stored] == [None] * 4
    assert [Path(s["path"]).name for s in stored] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    assert ds[0]["images"][0].size == (8, 8)


def test_takes_the_last_frames_with_stride_oldest_first(make_root) -> None:
    root = make_root({"a.jpg": (A_STOP, R_RED)}, frames={"a": 12})
    names = lambda ds: [Path(s["path"]).name for s in ds.data.column("images")[0].as_py()]  # noqa: E731
    assert names(load_bddoia(root, "val", num_frames=4)) == ["8.jpg", "9.jpg", "10.jpg", "11.jpg"]
    assert names(load_bddoia(root, "val", num_frames=3, frame_stride=4)) == ["3.jpg", "7.jpg", "11.jpg"]
    assert names(load_bddoia(root, "val", num_frames=1)) == ["a.jpg"]  # the annotated frame in data/


def test_clips_without_enough_frames_fall_back_and_are_reported(make_root) -> None:
    clips = {"a.jpg": (A_STOP, R_RED), "b.jpg": (A_STOP, R_RED), "c.jpg": (A_STOP, R_RED)}
    root = make_root(clips, frames={"a": 4, "b": 2})
    with pytest.warns(UserWarning, match=r"2 of 3 clips have fewer than 4 frames.*\{1: 1, 2: 1, 4: 1\}"):
        ds = load_bddoia(root, "val")
    assert ds["num_frames"] == [4, 2, 1]
    assert Path(ds.data.column("images")[2].as_py()[0]["path"]) == root / "data" / "c.jpg"


def test_descriptions_file_fills_the_scene_column(make_root) -> None:
    root = make_root({"a.jpg": (A_STOP, R_RED)}, descriptions={"a": "A red light."})
    assert load_bddoia(root, "val", num_frames=1)["scene"] == ["A red light."]


def _break(root: Path, case: str) -> str:
    """Damage one entry of a two-clip val split; return text the error must contain."""
    actions_path, reasons_path = root / "val_25k_images_actions.json", root / "val_25k_images_reasons.json"
    actions, reasons = json.loads(actions_path.read_text()), json.loads(reasons_path.read_text())
    if case == "missing_image":
        (root / "data" / "b.jpg").unlink()
        return "image not found"
    if case == "corrupt_image":
        (root / "data" / "b.jpg").write_bytes(b"not a jpeg at all")
        return "cannot be decoded"
    if case == "truncated_image":
        data = (root / "data" / "b.jpg").read_bytes()
        (root / "data" / "b.jpg").write_bytes(data[: len(data) // 2])
        return "cannot be decoded"
    if case == "short_action_vector":
        actions["annotations"][1]["category"] = [0, 1, 0]
        message = "expected a list of 4 or 5 label bits, got 3 values"
    elif case == "long_reason_vector":
        reasons[1]["reason"] = [0] * 22
        message = "expected a list of 21 label bits, got 22 values"
    elif case == "annotation_without_image":
        actions["annotations"].append({"id": 7, "category": A_STOP})
        message = "annotation id 7: no image has this id"
    elif case == "image_without_annotation":
        actions["annotations"] = actions["annotations"][:1]
        message = "no annotation has this id"
    elif case == "image_without_reasons":
        reasons = reasons[:1]
        message = "no reason row has this file_name"
    elif case == "parent_path":
        actions["images"][1]["file_name"] = reasons[1]["file_name"] = "../b.jpg"
        message = "escapes the data folder"
    elif case == "absolute_path":
        actions["images"][1]["file_name"] = reasons[1]["file_name"] = "/etc/b.jpg"
        message = "is an absolute path"
    else:
        raise AssertionError(case)
    actions_path.write_text(json.dumps(actions))
    reasons_path.write_text(json.dumps(reasons))
    return message


BAD_CASES = [
    "missing_image",
    "corrupt_image",
    "truncated_image",
    "short_action_vector",
    "long_reason_vector",
    "annotation_without_image",
    "image_without_annotation",
    "image_without_reasons",
    "parent_path",
    "absolute_path",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_raises_an_error_naming_file_and_entry(make_root, case: str) -> None:
    root = make_root({"a.jpg": (A_STOP, R_RED), "b.jpg": ([1, 0, 0, 0], [1] + [0] * 20)})
    message = _break(root, case)
    with pytest.raises(BDDOIADataError) as info:
        load_bddoia(root, "val", num_frames=1)
    text = str(info.value)
    assert message in text
    assert "val_25k_images_" in text or "b.jpg" in text  # the file it is in
    assert "1 invalid entry" in text and len(info.value.issues) == 1


@pytest.mark.parametrize("case", BAD_CASES)
def test_skip_invalid_warns_with_counts_and_keeps_the_good_clips(make_root, case: str) -> None:
    root = make_root({"a.jpg": (A_STOP, R_RED), "b.jpg": ([1, 0, 0, 0], [1] + [0] * 20)})
    _break(root, case)
    with pytest.warns(UserWarning, match=r"1 invalid entries skipped \(1 \w+\)"):
        ds = load_bddoia(root, "val", num_frames=1, skip_invalid=True)
    assert ds["clip_id"] == ["a"] or (case == "annotation_without_image" and ds["clip_id"] == ["a", "b"])


def test_error_names_the_skip_option_as_each_caller_spells_it(make_root, capsys: pytest.CaptureFixture[str]) -> None:
    """Python and recipe users read ``skip_invalid=True``, CLI users ``--skip-invalid``; each then works."""
    root = make_root({"a.jpg": (A_STOP, R_RED), "b.jpg": (A_STOP, R_RED)})
    (root / "data" / "b.jpg").unlink()
    with pytest.raises(BDDOIADataError, match=r"skip_invalid=True in Python and in recipes, --skip-invalid with"):
        load_bddoia(root, "val", num_frames=1)
    recipe_args = SFTScriptArguments(dataset_name=str(root), num_frames=1, skip_invalid=True)
    with pytest.warns(UserWarning, match="1 invalid entries skipped"):
        assert len(load_clips(recipe_args, "val")) == 1

    check = ["data", "check", "--root", str(root), "--split", "val", "--num-frames", "1"]
    assert main(check) == 2
    assert "--skip-invalid" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="1 invalid entries skipped"):
        assert main([*check, "--skip-invalid"]) == 0
    assert "val: 1 clips" in capsys.readouterr().out


def test_existence_check_does_not_decode(make_root) -> None:
    root = make_root({"a.jpg": (A_STOP, R_RED)})
    (root / "data" / "a.jpg").write_bytes(b"broken")
    assert len(load_bddoia(root, "val", num_frames=1, check_images="exists")) == 1


def test_broken_frame_in_the_frames_folder_is_reported(make_root) -> None:
    root = make_root({"a.jpg": (A_STOP, R_RED)}, frames={"a": 4})
    (root / "frames" / "a" / "2.jpg").write_bytes(b"broken")
    with pytest.raises(BDDOIADataError, match=r"frames/a.*2.jpg"):
        load_bddoia(root, "val")


def test_missing_label_file_and_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="val_25k_images_actions.json"):
        load_bddoia(tmp_path, "val")
    with pytest.raises(ValueError, match="split must be one of"):
        load_bddoia(tmp_path, "dev")


def test_malformed_label_file_is_named(make_root) -> None:
    root = make_root({"a.jpg": (A_STOP, R_RED)})
    (root / "val_25k_images_reasons.json").write_text("{not json")
    with pytest.raises(ValueError, match="val_25k_images_reasons.json is not valid JSON"):
        load_bddoia(root, "val")


def test_a_symlink_leading_out_of_the_data_folder_is_refused_unless_allowed(make_root, tmp_path: Path) -> None:
    root = make_root({"a.jpg": (A_STOP, R_RED), "b.jpg": (A_STOP, R_RED)}, frames={"a": 2})
    outside = tmp_path / "elsewhere.jpg"
    outside.write_bytes((root / "data" / "b.jpg").read_bytes())
    (root / "data" / "b.jpg").unlink()
    (root / "data" / "b.jpg").symlink_to(outside)
    with pytest.raises(BDDOIADataError, match=r"data/b.jpg is a symlink leading out of .*allow_outside_links=True"):
        load_bddoia(root, "val", num_frames=1)
    with pytest.warns(UserWarning, match=r"1 invalid entries skipped \(1 unsafe_path\)"):
        assert load_bddoia(root, "val", num_frames=1, skip_invalid=True)["clip_id"] == ["a"]
    assert len(load_bddoia(root, "val", num_frames=1, allow_outside_links=True)) == 2
    (root / "frames" / "a" / "1.jpg").unlink()
    (root / "frames" / "a" / "1.jpg").symlink_to(outside)
    with pytest.raises(BDDOIADataError, match=r"frames/a: .*frames/a/1.jpg is a symlink leading out"):
        load_bddoia(root, "val", num_frames=2, allow_outside_links=False, skip_invalid=False)


def test_a_symlink_inside_the_data_folder_is_followed(make_root) -> None:
    root = make_root({"a.jpg": (A_STOP, R_RED)})
    (root / "data" / "real.jpg").write_bytes((root / "data" / "a.jpg").read_bytes())
    (root / "data" / "a.jpg").unlink()
    (root / "data" / "a.jpg").symlink_to(root / "data" / "real.jpg")
    assert len(load_bddoia(root, "val", num_frames=1)) == 1


def test_a_repeated_image_id_names_both_images(make_root) -> None:
    root = make_root({"a.jpg": (A_STOP, R_RED), "b.jpg": (A_STOP, R_RED), "c.jpg": (A_STOP, R_RED)})
    actions_path = root / "val_25k_images_actions.json"
    actions = json.loads(actions_path.read_text())
    actions["images"][1]["id"] = 0  # b.jpg now shares a.jpg's id, so both would get a.jpg's labels
    actions["annotations"] = [a for a in actions["annotations"] if a["id"] != 1]
    actions_path.write_text(json.dumps(actions))
    with pytest.raises(BDDOIADataError) as info:
        load_bddoia(root, "val", num_frames=1)
    assert "image id 0 ('a.jpg'): the id of 'b.jpg' too" in str(info.value)
    assert "image id 0 ('b.jpg'): the id of 'a.jpg' too" in str(info.value)
    with pytest.warns(UserWarning, match=r"2 invalid entries skipped \(2 duplicate\)"):
        assert load_bddoia(root, "val", num_frames=1, skip_invalid=True)["clip_id"] == ["c"]


def test_a_list_valued_id_is_an_entry_error_not_a_type_error(make_root) -> None:
    root = make_root({"a.jpg": (A_STOP, R_RED), "b.jpg": (A_STOP, R_RED)})
    actions_path = root / "val_25k_images_actions.json"
    actions = json.loads(actions_path.read_text())
    actions["images"][1]["id"] = actions["annotations"][1]["id"] = [1]
    actions_path.write_text(json.dumps(actions))
    with pytest.raises(BDDOIADataError) as info:
        load_bddoia(root, "val", num_frames=1)
    assert "val_25k_images_actions.json: annotations[1]: id must be an integer or a string, got list [1]" in str(
        info.value
    )
    assert "images[1] ('b.jpg'): id must be an integer or a string" in str(info.value)
    with pytest.warns(UserWarning, match="2 invalid entries skipped"):
        assert load_bddoia(root, "val", num_frames=1, skip_invalid=True)["clip_id"] == ["a"]


@pytest.mark.parametrize(
    ("encoding", "message"), [("utf-16", "is UTF-16; save it as UTF-8"), ("latin-1", r"is not UTF-8 text \(byte")]
)
def test_a_label_file_in_another_encoding_is_named(make_root, encoding: str, message: str) -> None:
    root = make_root({"é.jpg": (A_STOP, R_RED)})
    path = root / "val_25k_images_reasons.json"
    path.write_bytes(
        path.read_text(encoding="utf-8").encode(encoding) if encoding == "utf-16" else '["é"]'.encode(encoding)
    )
    with pytest.raises(ValueError, match=rf"val_25k_images_reasons.json {message}"):
        load_bddoia(root, "val")


def test_an_empty_split_names_split_and_folder(make_root) -> None:
    root = make_root({}, split="test")
    with pytest.raises(ValueError, match=rf"BDD-OIA split 'test' in {root} has no clips: .* lists no images"):
        load_bddoia(root, "test")
    root = make_root({"a.jpg": (A_STOP, R_RED)})
    (root / "data" / "a.jpg").unlink()
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="its 1 images were all skipped"):
        load_bddoia(root, "val", num_frames=1, skip_invalid=True)


@pytest.mark.parametrize("case", json_bit_cases(21), ids=lambda c: c.name)
def test_label_rows_are_checked_as_bit_vectors(make_root, case: BitCase) -> None:
    """A reason row is taken or refused as check_bits decides (tests/bit_cases.py); a refusal is one bad_label
    issue naming the file and the entry."""
    root = make_root({"a.jpg": (A_STOP, case.value)})
    if case.expected is None:
        with pytest.raises(BDDOIADataError) as info:
            load_bddoia(root, "val", num_frames=1, check_images="exists")
        (issue,) = info.value.issues
        assert issue.kind == "bad_label" and "label bits" in issue.message
        assert str(issue).startswith(f"{root / 'val_25k_images_reasons.json'}: file_name 'a.jpg': ")
        return
    clips = load_bddoia(root, "val", num_frames=1, check_images="exists")
    assert clips["reasons"] == [case.expected] and clips["actions"] == [A_STOP]
