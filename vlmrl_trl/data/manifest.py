"""Clips from a JSONL manifest: one clip per line, frames as paths under the manifest's folder, labels as ids.

A clip set without BDD-OIA's layout (and with any label set, :mod:`vlmrl_trl.labels`) is a manifest file
(format in docs/data.md)::

    {"clip_id": "c0001", "frames": ["frames/c0001/0.jpg", "frames/c0001/1.jpg"], "actions": ["brake"],
     "reasons": ["obstacle"], "description": "a car stops ahead", "split": "train"}

``frames`` are oldest first, relative to the manifest's folder and inside it (symlinks included); ``actions`` and
``reasons`` are lists of ids (or 0/1 vectors in bit order); ``description`` is optional, ``split`` defaults to
``train``. The loader checks what the BDD-OIA loader checks: every problem is an :class:`Issue` naming
``file:line``, raised together as :class:`ManifestDataError` or, with ``skip_invalid``, skipped with counted kinds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..labels import BDDOIA, LabelSet
from ..schema import check_bits, ids_to_bits
from .bddoia import SPLITS, ImageCheck, Issue, _image_problem, _unsafe_name, clip_dataset, warn_skipped

if TYPE_CHECKING:
    import datasets

FIELDS = frozenset({"clip_id", "frames", "actions", "reasons", "description", "split"})


class ManifestDataError(ValueError):
    """Invalid manifest lines; ``issues`` lists every one found (the message shows the first ones)."""

    def __init__(self, path: Path, split: str, issues: list[Issue]):
        self.issues = issues
        shown = "\n  ".join(str(i) for i in issues[:10])
        more = f"\n  ... and {len(issues) - 10} more" if len(issues) > 10 else ""
        super().__init__(
            f"{len(issues)} invalid clip{'s' * (len(issues) != 1)} in manifest {path} split {split!r} (fix or remove "
            f"them, or skip them with a warning: skip_invalid=True):\n  {shown}{more}"
        )


def _label_bits(value: Any, vocabulary: Sequence[str], field: str) -> list[int]:
    """A clip's label as bits over ``vocabulary``, from a list of ids or of 0/1 bits; ValueError says why not."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        if len(set(value)) != len(value):
            raise ValueError(f"{field!r} repeats an id: {value}")
        return ids_to_bits(value, vocabulary)
    try:
        return check_bits(value, len(vocabulary))
    except ValueError as err:
        raise ValueError(f"{field!r} must be a list of ids or of 0/1 bits: {err}") from None


def _frame_paths(frames: Any, root: Path, check: ImageCheck) -> list[Path] | tuple[str, str]:
    """The clip's frame paths, or (issue kind, why): not a list, outside the root, missing or corrupt."""
    if not isinstance(frames, list) or not frames:
        return "bad_entry", f"'frames' must be a non-empty list of paths, got {frames!r}"
    paths = []
    for name in frames:
        problem = _unsafe_name(name)
        if problem is not None:
            return "unsafe_path", problem.replace("file_name", "frame").replace("data folder", "manifest's folder")
        path = root / name
        if not path.resolve().is_relative_to(root.resolve()):
            return "unsafe_path", f"frame {name!r} resolves outside the manifest's folder (a symlink?)"
        problem = _image_problem(path, check)
        if problem is not None:
            return "bad_image", problem
        paths.append(path)
    return paths


def _clip_row(rec: Any, root: Path, labels: LabelSet, check: ImageCheck) -> dict[str, Any] | tuple[str, str]:
    """One manifest record as a clip row, or (issue kind, message)."""
    if not isinstance(rec, dict):
        return "bad_entry", f"expected a JSON object, got {type(rec).__name__}"
    unknown = sorted(set(rec) - FIELDS)
    if unknown:
        return "bad_entry", f"unknown field(s) {unknown}; valid fields: {', '.join(sorted(FIELDS))}"
    clip_id = rec.get("clip_id")
    if not isinstance(clip_id, str) or not clip_id.strip():
        return "bad_entry", f"'clip_id' must be a non-empty string, got {clip_id!r}"
    description = rec.get("description")
    if description is not None and not isinstance(description, str):
        return "bad_entry", f"'description' must be a string, got {description!r}"
    try:
        actions = _label_bits(rec.get("actions"), labels.action_ids, "actions")
        reasons = _label_bits(rec.get("reasons", []), labels.reason_ids, "reasons")
    except ValueError as err:
        return "bad_label", f"{err} (label set {labels.name!r})"
    frames = _frame_paths(rec.get("frames"), root, check)
    if isinstance(frames, tuple):
        return frames
    return {"clip_id": clip_id, "frames": frames, "actions": actions, "reasons": reasons, "scene": description}


def load_manifest(
    path: str | Path,
    split: str,
    num_frames: int = 4,
    frame_stride: int = 1,
    *,
    labels: LabelSet = BDDOIA,
    skip_invalid: bool = False,
    check_images: ImageCheck = "decode",
) -> datasets.Dataset:
    """The clips of one split of a manifest, with ``load_bddoia``'s columns (``clip_id``, ``file_name``: the last
    frame's path in the manifest, ``images``: the last ``num_frames`` frames ``frame_stride`` apart, oldest first,
    ``num_frames``, ``actions`` and ``reasons`` as bits over ``labels``, ``scene``)."""

    if num_frames < 1 or frame_stride < 1:
        raise ValueError(f"num_frames and frame_stride must be >= 1, got {num_frames} and {frame_stride}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"clip manifest not found: {path}")
    root = path.parent
    issues: list[Issue] = []
    rows: dict[str, list] = {k: [] for k in ("clip_id", "file_name", "images", "num_frames", "actions", "reasons")}
    rows["scene"] = []
    seen: dict[str, int] = {}
    total = 0
    with path.open(encoding="utf-8", errors="strict") as lines:
        try:
            numbered = list(enumerate(lines, 1))
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: not UTF-8 text ({err})") from None
    for lineno, line in numbered:
        if not line.strip():
            continue
        where = Path(f"{path}:{lineno}")
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            issues.append(Issue("bad_entry", where, "line", f"not JSON ({err})"))
            continue
        line_split = rec.get("split", "train") if isinstance(rec, dict) else split
        if line_split not in SPLITS:
            issues.append(Issue("bad_entry", where, "split", f"must be one of {SPLITS}, got {line_split!r}"))
            continue
        if line_split != split:
            continue
        total += 1
        row = _clip_row(rec, root, labels, check_images)
        entry = f"clip {rec.get('clip_id')!r}" if isinstance(rec, dict) else "line"
        if isinstance(row, tuple):
            issues.append(Issue(row[0], where, entry, row[1]))
            continue
        if row["clip_id"] in seen:
            issues.append(Issue("duplicate", where, entry, f"clip_id already on line {seen[row['clip_id']]}"))
            continue
        seen[row["clip_id"]] = lineno
        frames = row.pop("frames")
        picked = [str(p) for p in reversed(frames[::-1][::frame_stride][:num_frames])]
        rows["clip_id"].append(row["clip_id"])
        rows["file_name"].append(str(Path(picked[-1]).relative_to(root)))
        rows["images"].append(picked)
        rows["num_frames"].append(len(picked))
        for key in ("actions", "reasons", "scene"):
            rows[key].append(row[key])
    if issues:
        if not skip_invalid:
            raise ManifestDataError(path, split, issues)
        warn_skipped(f"manifest {path} {split}", issues, "lines", kept=len(rows["clip_id"]), total=f"{total} clips")
    return clip_dataset(rows, split)
