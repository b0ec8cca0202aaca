"""Load BDD-OIA (or a synthetic set in its layout) as a lazily decoded ``datasets.Dataset`` of clips.

Layout (``../shared/bddoia-labels/README.md``)::

    root/
      {split}_25k_images_actions.json   {"images": [{"id", "file_name", ...}], "annotations": [{"id", "category"}]}
      {split}_25k_images_reasons.json   [{"file_name", "reason": [21 bits]}]
      {split}_descriptions.json         optional: {clip_id: scene description} (the synthetic generator writes it)
      data/<file_name>                   the annotated (last) frame of each clip
      frames/<clip_id>/<i>.jpg           optional: the clip's frames, numbered in time order, the last = annotated

Actions are looked up by image id and reasons by file name, as the official loader does; clips whose action
row has a 5th ``confuse`` bit set to 1 are dropped (``keep_confuse=True`` keeps them) and only the 4 action
bits are kept.
"""

from __future__ import annotations

import codecs
import json
import logging
import re
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any, Literal

from PIL import Image

from ..schema import NUM_ACTIONS, NUM_REASONS, check_bits

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
ImageCheck = Literal["decode", "exists"]
_FRAME_NAME = re.compile(r"^(\d+)\.(jpe?g|png)$", re.IGNORECASE)


@dataclass(frozen=True)
class Issue:
    """One invalid entry: the file it is in, which entry, and what is wrong."""

    kind: str
    file: Path
    entry: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.entry}: {self.message}"


class BDDOIADataError(ValueError):
    """Invalid BDD-OIA input; ``issues`` lists every invalid entry found (the message shows the first ones)."""

    def __init__(self, split: str, issues: list[Issue]):
        self.issues = issues
        shown = "\n  ".join(str(i) for i in issues[:10])
        more = f"\n  ... and {len(issues) - 10} more" if len(issues) > 10 else ""
        super().__init__(
            f"{len(issues)} invalid entr{'y' if len(issues) == 1 else 'ies'} in BDD-OIA split {split!r} "
            f"(fix or remove them, or skip them with a warning: skip_invalid=True in Python and in recipes, "
            f"--skip-invalid with 'vlmrl-trl data check' and 'vlmrl-trl predict'):\n  {shown}{more}"
        )


def label_files(root: str | Path, split: str) -> tuple[Path, Path]:
    """Paths of a split's action and reason label files."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    return root / f"{split}_25k_images_actions.json", root / f"{split}_25k_images_reasons.json"


def read_json_file(path: Path) -> Any:
    """A UTF-8 JSON file's value; a missing file, another encoding (UTF-16 named as such) or bad JSON is an error
    naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"BDD-OIA label file not found: {path}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        utf16 = data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
        found = "is UTF-16" if utf16 else f"is not UTF-8 text (byte {err.start}: {data[err.start : err.start + 1]!r})"
        raise ValueError(f"{path} {found}; save it as UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


_read_json = read_json_file  # the name frames.py imports


def id_problem(value: Any) -> str | None:
    """Why ``value`` cannot be an image or annotation id (ids are integers or strings), or None when it can."""
    if isinstance(value, int | str) and not isinstance(value, bool):
        return None
    return f"id must be an integer or a string, got {type(value).__name__} {value!r}"


def link_problem(path: Path, folder: Path, *, allow: bool = False) -> str | None:
    """Why ``path`` may not be read as part of ``folder``: it leads outside it through a symlink (unless ``allow``);
    None when it stays inside."""
    if allow or path.resolve().is_relative_to(folder.resolve()):
        return None
    return (
        f"{path} is a symlink leading out of {folder} (to {path.resolve()}); copy the file in, or pass "
        "allow_outside_links=True to follow such links"
    )


def _unsafe_name(file_name: Any) -> str | None:
    """Why ``file_name`` cannot name a file inside the data folder, or None when it can."""
    if not isinstance(file_name, str) or not file_name.strip():
        return f"file_name must be a non-empty string, got {file_name!r}"
    posix, windows = PurePosixPath(file_name), PureWindowsPath(file_name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive:
        return f"file_name {file_name!r} is an absolute path; it must be relative to the data folder"
    if ".." in posix.parts or ".." in windows.parts:
        return f"file_name {file_name!r} escapes the data folder"
    return None


def _image_problem(path: Path, check: ImageCheck) -> str | None:
    if not path.is_file():
        return f"image not found: {path}"
    if check == "exists":
        return None
    try:
        with Image.open(path) as img:
            img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))  # JPEG: decode at 1/8 scale
            img.load()
    except Exception as err:  # PIL raises many types for broken files
        return f"image cannot be decoded: {path} ({type(err).__name__}: {err})"
    return None


def _clip_frames(frames_root: Path, clip_id: str, num_frames: int, stride: int) -> list[Path] | None:
    """The last ``num_frames`` frames ``stride`` apart from ``frames/<clip>/``, oldest first; None if absent."""
    folder = frames_root / clip_id
    if not folder.is_dir():
        return None
    numbered = sorted(
        (int(m.group(1)), p) for p in folder.iterdir() if (m := _FRAME_NAME.match(p.name)) and p.is_file()
    )
    if not numbered:
        return None
    picked = numbered[::-1][::stride][:num_frames]
    return [p for _, p in reversed(picked)]


def _read_descriptions(path: Path) -> dict[str, str] | None:
    if not path.is_file():
        return None
    data = _read_json(path)
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError(f"{path} must map clip ids to description strings")
    return data


@dataclass
class _LabelFiles:
    """A split's two label files, read: the image entries, the annotations by id and the reason rows by file name
    (the first of each), and the invalid entries found so far."""

    actions_path: Path
    reasons_path: Path
    images: list[Any]
    annotations: dict[Any, Any]
    reasons: dict[str, Any]
    issues: list[Issue]


@dataclass(frozen=True)
class _Labelled:
    """An image entry with valid labels: how issues name it, its file name and its label bits."""

    entry: str
    file_name: str
    category: list[int]
    reasons: list[int]

    @property
    def confuse(self) -> bool:
        """The action row's 5th bit, set on the clips the official loader drops."""
        return len(self.category) > NUM_ACTIONS and self.category[NUM_ACTIONS] == 1


def _read_label_files(actions_path: Path, reasons_path: Path) -> _LabelFiles:
    """Read and index the action and reason files; a file of the wrong shape is a ``ValueError``, a malformed or
    repeated entry an issue."""
    actions_json, reasons_json = _read_json(actions_path), _read_json(reasons_path)
    if not (
        isinstance(actions_json, dict)
        and isinstance(actions_json.get("images"), list)
        and isinstance(actions_json.get("annotations"), list)
    ):
        raise ValueError(f"{actions_path} must be an object with an 'images' list and an 'annotations' list")
    if not isinstance(reasons_json, list):
        raise ValueError(f"{reasons_path} must be a list of {{'file_name', 'reason'}} objects")
    labels = _LabelFiles(actions_path, reasons_path, actions_json["images"], {}, {}, [])
    for pos, ann in enumerate(actions_json["annotations"]):
        if not isinstance(ann, dict) or "id" not in ann or "category" not in ann:
            labels.issues.append(Issue("bad_entry", actions_path, f"annotations[{pos}]", "needs 'id' and 'category'"))
        elif (problem := id_problem(ann["id"])) is not None:
            labels.issues.append(Issue("bad_entry", actions_path, f"annotations[{pos}]", problem))
        elif ann["id"] in labels.annotations:
            labels.issues.append(Issue("duplicate", actions_path, f"annotation id {ann['id']}", "appears twice"))
        else:
            labels.annotations[ann["id"]] = ann["category"]
    for pos, row in enumerate(reasons_json):
        if not isinstance(row, dict) or not isinstance(row.get("file_name"), str) or "reason" not in row:
            labels.issues.append(Issue("bad_entry", reasons_path, f"[{pos}]", "needs 'file_name' and 'reason'"))
        elif row["file_name"] in labels.reasons:
            labels.issues.append(Issue("duplicate", reasons_path, f"file_name {row['file_name']!r}", "appears twice"))
        else:
            labels.reasons[row["file_name"]] = row["reason"]
    return labels


def _labelled_images(labels: _LabelFiles) -> Iterator[_Labelled]:
    """The image entries whose id, file name and labels are valid, in file order; each invalid one, and at the end
    each label that no image has, is added to ``labels.issues``."""
    seen_ids: set = set()
    seen_names: set[str] = set()
    matched_names: set[str] = set()
    names_by_id: dict[Any, list[Any]] = {}  # an id shared by images would give them all one annotation
    for img in labels.images:
        if isinstance(img, dict) and id_problem(img.get("id")) is None:
            names_by_id.setdefault(img["id"], []).append(img.get("file_name"))
    for pos, img in enumerate(labels.images):
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            labels.issues.append(
                Issue("bad_entry", labels.actions_path, f"images[{pos}]", "needs 'id' and 'file_name'")
            )
            continue
        image_id, file_name = img["id"], img["file_name"]
        if isinstance(file_name, str):
            matched_names.add(file_name)  # its reason row belongs to this (maybe invalid) image, not an orphan
        problem = id_problem(image_id)
        if problem is not None:
            labels.issues.append(Issue("bad_entry", labels.actions_path, f"images[{pos}] ({file_name!r})", problem))
            continue
        seen_ids.add(image_id)
        found = _image_labels(labels, image_id, file_name, names_by_id[image_id], seen_names)
        if isinstance(found, Issue):
            labels.issues.append(found)
            continue
        yield _Labelled(f"image id {image_id} ({file_name!r})", file_name, *found)
    for image_id in labels.annotations.keys() - seen_ids:
        labels.issues.append(
            Issue("orphan_label", labels.actions_path, f"annotation id {image_id}", "no image has this id")
        )
    for file_name in labels.reasons.keys() - matched_names:
        labels.issues.append(
            Issue("orphan_label", labels.reasons_path, f"file_name {file_name!r}", "no image has this file_name")
        )


def _image_labels(
    labels: _LabelFiles, image_id: Any, file_name: Any, names_with_id: list[Any], seen_names: set[str]
) -> tuple[list[int], list[int]] | Issue:
    """The action and reason bits of an image entry (with a valid id; its file name is then seen), or why it has no
    usable labels: a shared id, an unsafe or repeated file name, a missing or malformed annotation or reason row."""
    entry = f"image id {image_id} ({file_name!r})"
    if len(names_with_id) > 1:
        others = ", ".join(repr(n) for n in names_with_id if n != file_name) or repr(file_name)
        return Issue("duplicate", labels.actions_path, entry, f"the id of {others} too; each image needs its own")
    problem = _unsafe_name(file_name)
    if problem is not None:
        return Issue("unsafe_path", labels.actions_path, entry, problem)
    if file_name in seen_names:
        return Issue("duplicate", labels.actions_path, entry, "file_name appears twice")
    seen_names.add(file_name)
    if image_id not in labels.annotations:
        return Issue("missing_label", labels.actions_path, entry, "no annotation has this id")
    try:
        category = check_bits(labels.annotations[image_id], (NUM_ACTIONS, NUM_ACTIONS + 1))
    except ValueError as err:
        return Issue("bad_label", labels.actions_path, f"annotation id {image_id} ({file_name!r})", str(err))
    if file_name not in labels.reasons:
        return Issue("missing_label", labels.reasons_path, entry, "no reason row has this file_name")
    try:
        return category, check_bits(labels.reasons[file_name], NUM_REASONS)
    except ValueError as err:
        return Issue("bad_label", labels.reasons_path, f"file_name {file_name!r}", str(err))


@dataclass(frozen=True)
class _FrameSource:
    """Where a split's frames are and how a clip's are picked and checked."""

    data_root: Path
    frames_root: Path
    num_frames: int
    stride: int
    check: ImageCheck
    allow_outside_links: bool

    def resolve(self, item: _Labelled) -> tuple[str, list[str]] | Issue:
        """The clip id and frame paths of an image entry (its ``frames/<clip>/`` frames, else its annotated frame),
        or the issue that a link out of the folders or a missing or broken image raises."""
        image_path = self.data_root / item.file_name
        problem = link_problem(image_path, self.data_root, allow=self.allow_outside_links)
        if problem is not None:
            return Issue("unsafe_path", image_path, item.entry, problem)
        problem = _image_problem(image_path, self.check)
        if problem is not None:
            return Issue("bad_image", image_path, item.entry, problem)
        clip_id = str(PurePosixPath(item.file_name.replace("\\", "/")).with_suffix(""))
        frames = _clip_frames(self.frames_root, clip_id, self.num_frames, self.stride) if self.num_frames > 1 else None
        if frames:
            links = [p for f in frames if (p := link_problem(f, self.frames_root, allow=self.allow_outside_links))]
            if links:
                return Issue("unsafe_path", self.frames_root / clip_id, item.entry, links[0])
            problems = [p for p in (_image_problem(f, self.check) for f in frames) if p is not None]
            if problems:
                return Issue("bad_image", self.frames_root / clip_id, item.entry, problems[0])
        return clip_id, [str(p) for p in frames] if frames else [str(image_path)]


def clip_dataset(rows: dict[str, list], split: str, keep_confuse: bool = False) -> datasets.Dataset:
    """The clip columns every loader returns as a ``datasets.Dataset``, frames as lazily decoded images;
    ``confuse`` (BDD-OIA's) only if kept."""
    import datasets

    features = {
        "clip_id": datasets.Value("string"),
        "file_name": datasets.Value("string"),
        "images": datasets.List(datasets.Image()),
        "num_frames": datasets.Value("int32"),
        "actions": datasets.List(datasets.Value("int8")),
        "reasons": datasets.List(datasets.Value("int8")),
        "scene": datasets.Value("string"),
    }
    if keep_confuse:
        features["confuse"] = datasets.Value("bool")
    else:
        rows.pop("confuse", None)
    return datasets.Dataset.from_dict(rows, features=datasets.Features(features), split=split)


def warn_skipped(source: str, issues: Sequence[Issue], entries: str, *, kept: int, total: str) -> None:
    """The one warning of a loader that skipped invalid `entries` (``skip_invalid``): how many of each kind, what
    was kept, the first issue; it points at the loader's caller."""
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(Counter(i.kind for i in issues).items()))
    warnings.warn(
        f"{source}: {len(issues)} invalid {entries} skipped ({kinds}); kept {kept} of {total}. First: {issues[0]}",
        stacklevel=3,
    )


def load_bddoia(
    root: str | Path,
    split: str,
    num_frames: int = 4,
    frame_stride: int = 1,
    *,
    keep_confuse: bool = False,
    skip_invalid: bool = False,
    check_images: ImageCheck = "decode",
    data_dir: str | Path | None = None,
    frames_dir: str | Path | None = None,
    allow_outside_links: bool = False,
) -> datasets.Dataset:
    """One split as a ``datasets.Dataset`` of clips, images stored as paths and decoded on access.

    Columns: ``clip_id``, ``file_name``, ``images`` (the clip's frames, oldest first, ``List(Image())``),
    ``num_frames`` (frames found for the clip: ``num_frames`` when ``frames/<clip>/`` holds enough, fewer when
    it holds fewer, 1 when it is absent and only ``data/<file_name>`` exists), ``actions`` (4 bits),
    ``reasons`` (21 bits), ``scene`` (the description or None), and ``confuse`` with ``keep_confuse=True``.

    Invalid entries (missing or undecodable image, label vector of the wrong length, image without labels or
    labels without image, a file name escaping the data folder or a symlink leading out of it unless
    ``allow_outside_links``, an id that is not an integer or string, a repeated image id) raise
    :class:`BDDOIADataError` naming each file and entry; with ``skip_invalid=True`` they are skipped and a warning
    gives the counts. A label file that is not UTF-8 JSON, or a split with no clip left, is a ``ValueError``
    naming the file, or the split and folder.
    ``check_images="exists"`` only checks that the files exist (fast on large sets; broken JPGs then fail when
    decoded), ``"decode"`` also decodes each at reduced size.
    """
    if num_frames < 1 or frame_stride < 1:
        raise ValueError(f"num_frames and frame_stride must be >= 1, got {num_frames} and {frame_stride}")
    if check_images not in ("decode", "exists"):
        raise ValueError(f"check_images must be 'decode' or 'exists', got {check_images!r}")
    root = Path(root)
    actions_path, reasons_path = label_files(root, split)
    source = _FrameSource(
        data_root=Path(data_dir) if data_dir is not None else root / "data",
        frames_root=Path(frames_dir) if frames_dir is not None else root / "frames",
        num_frames=num_frames,
        stride=frame_stride,
        check=check_images,
        allow_outside_links=allow_outside_links,
    )
    labels = _read_label_files(actions_path, reasons_path)
    descriptions_path = root / f"{split}_descriptions.json"
    descriptions = _read_descriptions(descriptions_path)

    columns = ("clip_id", "file_name", "images", "num_frames", "actions", "reasons", "scene", "confuse")
    rows: dict[str, list] = {k: [] for k in columns}
    confused = 0
    for item in _labelled_images(labels):
        if item.confuse and not keep_confuse:
            confused += 1
            continue
        resolved = source.resolve(item)
        if isinstance(resolved, Issue):
            labels.issues.append(resolved)
            continue
        clip_id, paths = resolved
        row = (clip_id, item.file_name, paths, len(paths), list(item.category[:NUM_ACTIONS]), list(item.reasons))
        scene = descriptions.get(clip_id) if descriptions is not None else None
        for column, value in zip(columns, (*row, scene, item.confuse), strict=True):
            rows[column].append(value)

    issues, total = labels.issues, len(labels.images)
    if issues:
        if not skip_invalid:
            raise BDDOIADataError(split, issues)
        warn_skipped(f"BDD-OIA {split}", issues, "entries", kept=len(rows["clip_id"]), total=f"{total} images")
    if confused:
        logger.info("BDD-OIA %s: dropped %d 'confuse' clips, as the official loader does", split, confused)
    if not rows["clip_id"]:
        why = f"its {total} images were all skipped or dropped" if total else f"{actions_path.name} lists no images"
        raise ValueError(f"BDD-OIA split {split!r} in {root} has no clips: {why}")
    frame_counts = Counter(rows["num_frames"])
    short = sum(n for k, n in frame_counts.items() if k < num_frames)
    if short:
        warnings.warn(
            f"BDD-OIA {split}: {short} of {len(rows['clip_id'])} clips have fewer than {num_frames} frames "
            f"(frames per clip: {dict(sorted(frame_counts.items()))}); see {source.frames_root}",
            stacklevel=2,
        )
    if descriptions is not None:
        missing = sum(s is None for s in rows["scene"])
        if missing:
            warnings.warn(f"{descriptions_path} has no description for {missing} clips", stacklevel=2)
    return clip_dataset(rows, split, keep_confuse)
