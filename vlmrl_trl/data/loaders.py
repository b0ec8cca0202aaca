"""Which loader reads a recipe's ``dataset_name``: a registry, so a new clip source is an entry, not a new branch.

Shipped, tried in order (the first whose ``matches`` accepts the name reads it):

* ``synthetic``: the embedded synthetic clips, generated into ``data_dir`` when absent (BDD-OIA labels);
* ``manifest``: a ``.jsonl`` clip manifest (:mod:`.manifest`), with any label set;
* ``saved``: a folder written by ``datasets``' ``save_to_disk`` (a ``DatasetDict`` of splits, or one ``Dataset``
  used as the train split) holding the clip columns, with any label set;
* ``bddoia``: any other folder, read as a BDD-OIA copy (BDD-OIA labels).

``register_loader`` adds one of your own. Every loader returns the clip columns ``load_bddoia`` does
(``clip_id``, ``images``, ``num_frames``, ``actions``, ``reasons``, ``scene``), label bits over the recipe's label set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..labels import BDDOIA, LabelSet, load_label_set
from ..schema import check_bits

if TYPE_CHECKING:
    import datasets

    from ..sft import SFTScriptArguments

logger = logging.getLogger(__name__)

SYNTHETIC = "synthetic"
CLIP_COLUMNS: tuple[str, ...] = ("clip_id", "images", "num_frames", "actions", "reasons", "scene")


@dataclass(frozen=True)
class ClipLoader:
    """A named clip source: ``matches(dataset_name)`` says whether it reads the name, ``load(script_args, split,
    labels)`` reads one split."""

    name: str
    matches: Callable[[str], bool]
    load: Callable[[SFTScriptArguments, str, LabelSet], datasets.Dataset]
    description: str


LOADERS: list[ClipLoader] = []


def register_loader(loader: ClipLoader, *, first: bool = True) -> None:
    """Add a loader, tried before the shipped ones (``first``) or after them; a loader of the same name goes."""
    LOADERS[:] = [known for known in LOADERS if known.name != loader.name]
    if first:
        LOADERS.insert(0, loader)
    else:
        LOADERS.append(loader)


def loader_for(dataset_name: str) -> ClipLoader:
    """The first loader that reads ``dataset_name``; none is a FileNotFoundError naming what each one reads."""
    for loader in LOADERS:
        if loader.matches(dataset_name):
            return loader
    choices = "; ".join(f"{loader.name}: {loader.description}" for loader in LOADERS)
    raise FileNotFoundError(
        f"dataset_name={dataset_name!r}: no such folder or file. A BDD-OIA folder holds the label files "
        f"(<split>_25k_images_actions.json, <split>_25k_images_reasons.json) and the clips' frames (docs/data.md). "
        f"Readable sources: {choices}"
    )


def load_clips(script_args: SFTScriptArguments, split: str) -> datasets.Dataset:
    """The raw clips of one split from the source ``script_args.dataset_name`` names, labels over its
    ``label_set``."""
    labels = load_label_set(script_args.label_set)
    return loader_for(script_args.dataset_name).load(script_args, split, labels)


def _require_bddoia_labels(labels: LabelSet, source: str) -> None:
    if (labels.action_ids, labels.reason_ids) != (BDDOIA.action_ids, BDDOIA.reason_ids):
        raise ValueError(
            f"{source} clips carry BDD-OIA's labels, not label set {labels.name!r} ({labels.source}); write your "
            "clips as a manifest (.jsonl, docs/data.md) to use another label set"
        )


def ensure_synthetic(script_args: SFTScriptArguments) -> Path:
    """The synthetic set in ``data_dir``, generated there first if the folder holds none."""
    from accelerate import PartialState

    from .synthetic import INFO_FILE, generate_synthetic

    root = Path(script_args.data_dir)
    # Under `accelerate launch` the main process generates while the others wait, then all read.
    with PartialState().main_process_first():
        if not (root / INFO_FILE).is_file():
            logger.info("generating the synthetic clips into %s", root)
            generate_synthetic(
                root,
                train=script_args.synthetic_train_clips,
                val=script_args.synthetic_val_clips,
                test=script_args.synthetic_test_clips,
                seed=script_args.synthetic_seed,
                num_frames=(script_args.num_frames - 1) * script_args.frame_stride + 1,
            )
    return root


def _bddoia_folder(script_args: SFTScriptArguments, root: Path, split: str, labels: LabelSet) -> datasets.Dataset:
    from .bddoia import load_bddoia

    _require_bddoia_labels(labels, f"the BDD-OIA-layout folder {root}")
    return load_bddoia(
        root,
        split,
        num_frames=script_args.num_frames,
        frame_stride=script_args.frame_stride,
        skip_invalid=script_args.skip_invalid,
    )


def _load_synthetic(script_args: SFTScriptArguments, split: str, labels: LabelSet) -> datasets.Dataset:
    return _bddoia_folder(script_args, ensure_synthetic(script_args), split, labels)


def _load_bddoia(script_args: SFTScriptArguments, split: str, labels: LabelSet) -> datasets.Dataset:
    return _bddoia_folder(script_args, Path(script_args.dataset_name), split, labels)


def _load_manifest(script_args: SFTScriptArguments, split: str, labels: LabelSet) -> datasets.Dataset:
    from .manifest import load_manifest

    return load_manifest(
        script_args.dataset_name,
        split,
        num_frames=script_args.num_frames,
        frame_stride=script_args.frame_stride,
        labels=labels,
        skip_invalid=script_args.skip_invalid,
    )


def _is_saved_dataset(name: str) -> bool:
    folder = Path(name)
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def _load_saved(script_args: SFTScriptArguments, split: str, labels: LabelSet) -> datasets.Dataset:
    from datasets import DatasetDict, load_from_disk

    saved: Any = load_from_disk(script_args.dataset_name)
    where = f"dataset_name={script_args.dataset_name!r} (a save_to_disk folder)"
    if isinstance(saved, DatasetDict):
        if split not in saved:
            raise ValueError(f"{where} has no split {split!r}; it has {', '.join(saved)}")
        saved = saved[split]
    elif split != "train":
        raise ValueError(f"{where} holds one Dataset, read as the train split; save a DatasetDict for {split!r}")
    missing = [c for c in CLIP_COLUMNS if c not in saved.column_names]
    if missing:
        raise ValueError(f"{where} lacks the clip columns {missing} (it has {saved.column_names})")
    for column, size in (("actions", labels.num_actions), ("reasons", labels.num_reasons)):
        for row, bits in enumerate(saved[column]):
            try:
                check_bits(bits, size)
            except ValueError as err:
                raise ValueError(f"{where}: row {row} of {column!r} (label set {labels.name!r}): {err}") from None
    return saved


for _loader in (
    ClipLoader(SYNTHETIC, lambda name: name == SYNTHETIC, _load_synthetic, f"'{SYNTHETIC}', generated into data_dir"),
    ClipLoader("manifest", lambda name: name.endswith(".jsonl"), _load_manifest, "a clip manifest file (.jsonl)"),
    ClipLoader("saved", _is_saved_dataset, _load_saved, "a folder written by datasets' save_to_disk"),
    ClipLoader("bddoia", lambda name: Path(name).is_dir(), _load_bddoia, "a folder in BDD-OIA's layout"),
):
    register_loader(_loader, first=False)
