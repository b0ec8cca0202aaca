"""Clip manifests (JSONL) and the loader registry that picks a reader from ``dataset_name``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from bit_cases import BitCase, json_bit_cases
from PIL import Image

from vlmrl_trl.data import ManifestDataError, load_clips, load_manifest, loader_for
from vlmrl_trl.labels import LabelSet
from vlmrl_trl.sft import SFTScriptArguments

LANES = LabelSet.from_dict(
    {
        "name": "lanes",
        "actions": [{"id": "keep"}, {"id": "brake"}],
        "reasons": [{"id": "clear_road", "requires": "keep"}, {"id": "obstacle", "requires": "brake"}],
    }
)


def write_clips(root: Path, lines: list[dict | str]) -> Path:
    for clip in ("a", "b"):
        (root / "frames" / clip).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            Image.new("RGB", (16, 16), (40 * i, 0, 0)).save(root / "frames" / clip / f"{i}.png")
    path = root / "clips.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def clip(clip_id: str = "a", **fields) -> dict:
    frames = [f"frames/{clip_id}/{i}.png" for i in range(3)]
    return {"clip_id": clip_id, "frames": frames, "actions": ["keep"], "reasons": ["clear_road"], **fields}


def test_a_manifest_loads_like_bddoia_with_any_label_set(tmp_path):
    path = write_clips(tmp_path, [clip("a", description="a clear road"), clip("b", actions=[0, 1], split="val")])
    train = load_manifest(path, "train", num_frames=2, frame_stride=2, labels=LANES)
    assert train["clip_id"] == ["a"] and train["actions"] == [[1, 0]] and train["reasons"] == [[1, 0]]
    assert (
        train["num_frames"] == [2] and train["scene"] == ["a clear road"] and train["file_name"] == ["frames/a/2.png"]
    )
    assert [img.getpixel((0, 0))[0] for img in train[0]["images"]] == [0, 80]  # frames 0 and 2, oldest first
    val = load_manifest(path, "val", labels=LANES)
    assert val["actions"] == [[0, 1]] and val["scene"] == [None] and val["num_frames"] == [3]


def test_every_bad_line_is_named_by_file_and_line_or_skipped_with_counts(tmp_path):
    outside = tmp_path.parent / f"{tmp_path.name}-outside.png"
    Image.new("RGB", (4, 4)).save(outside)
    lines = [
        clip("a"),
        "{not json",
        clip("a"),  # duplicate id
        clip("c", frames=["../escape.png"]),
        clip("d", frames=["frames/a/9.png"]),
        clip("e", actions=["fly"]),
        clip("f", frames=["link.png"]),
        clip("g", colour="red"),
    ]
    path = write_clips(tmp_path, lines)
    os.symlink(outside, tmp_path / "link.png")
    with pytest.raises(ManifestDataError) as err:
        load_manifest(path, "train", labels=LANES)
    kinds = {(Path(str(i.file)).name, i.kind) for i in err.value.issues}
    assert kinds == {
        ("clips.jsonl:2", "bad_entry"),
        ("clips.jsonl:3", "duplicate"),
        ("clips.jsonl:4", "unsafe_path"),
        ("clips.jsonl:5", "bad_image"),
        ("clips.jsonl:6", "bad_label"),
        ("clips.jsonl:7", "unsafe_path"),
        ("clips.jsonl:8", "bad_entry"),
    }
    assert "clips.jsonl:6: clip 'e': unknown id 'fly'" in str(err.value)
    with pytest.warns(UserWarning, match=r"7 invalid lines skipped \(3 bad_entry|7 invalid lines skipped"):
        kept = load_manifest(path, "train", labels=LANES, skip_invalid=True)
    assert kept["clip_id"] == ["a"]


def test_dataset_name_picks_the_loader(tmp_path):
    path = write_clips(tmp_path, [clip("a"), clip("b")])
    assert loader_for("synthetic").name == "synthetic" and loader_for(str(path)).name == "manifest"
    assert loader_for(str(tmp_path)).name == "bddoia"
    clips = load_clips(SFTScriptArguments(dataset_name=str(path), label_set=_write(tmp_path, LANES)), "train")
    assert clips["clip_id"] == ["a", "b"]
    saved = tmp_path / "saved"
    from datasets import DatasetDict

    DatasetDict({"train": clips, "val": clips.select([0])}).save_to_disk(saved)
    assert loader_for(str(saved)).name == "saved"
    args = SFTScriptArguments(dataset_name=str(saved), label_set=_write(tmp_path, LANES))
    assert load_clips(args, "val")["clip_id"] == ["a"]
    with pytest.raises(
        ValueError, match=r"row 0 of 'actions' \(label set 'bddoia'\): expected a list of 4 label bits"
    ):
        load_clips(SFTScriptArguments(dataset_name=str(saved)), "train")
    with pytest.raises(ValueError, match="carry BDD-OIA's labels, not label set 'lanes'"):
        load_clips(SFTScriptArguments(dataset_name=str(tmp_path), label_set=_write(tmp_path, LANES)), "train")
    with pytest.raises(FileNotFoundError, match="no such folder or file.*manifest: a clip manifest file"):
        loader_for(str(tmp_path / "absent"))


def _write(folder: Path, labels: LabelSet) -> str:
    path = folder / f"{labels.name}.json"
    path.write_text(json.dumps(labels.to_dict()))
    return str(path)


@pytest.mark.parametrize("case", json_bit_cases(2), ids=lambda c: c.name)
def test_labels_given_as_bits_are_checked_as_bit_vectors(tmp_path, case: BitCase):
    """``actions`` given as bits is taken or refused as check_bits decides (tests/bit_cases.py; a list of strings
    is read as ids); a refusal is a bad_label issue naming the file, line and field."""
    path = write_clips(tmp_path, [clip("a", actions=case.value)])
    if case.expected is None:
        with pytest.raises(ManifestDataError) as err:
            load_manifest(path, "train", labels=LANES, check_images="exists")
        (issue,) = err.value.issues
        assert issue.kind == "bad_label" and str(issue).startswith(f"{path}:1: clip 'a': ")
        assert "'actions'" in issue.message or "unknown id" in issue.message
        return
    assert load_manifest(path, "train", labels=LANES, check_images="exists")["actions"] == [case.expected]
