"""Checkpoints that are complete or ignored, and verified before a run resumes from one.

After the Trainer has written every file of ``checkpoint-N`` (on every process), the main process writes a manifest,
``vlmrl_checkpoint.json``, holding the size and SHA-256 of each file, last and atomically (a temporary file, then
``os.replace``). A folder without a manifest is incomplete (a kill landed during its save) and a resume skips it,
saying so; the newest complete checkpoint is verified against its manifest, and a missing, truncated or changed
file stops the run with one line naming it (`CheckpointError`) rather than falling back to an older checkpoint:
corruption is the user's to look at, and a silent fallback would hide lost work. Old checkpoints are deleted only
once the new one is complete, their manifest first, so a kill during that deletion never leaves a folder that
looks complete but is not. `CompleteCheckpoints` is the Trainer mixin that does all this at save and load time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from transformers.trainer import SCHEDULER_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger(__name__)

MANIFEST = "vlmrl_checkpoint.json"
MANIFEST_VERSION = 1
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
_TEMPORARY_SUFFIX = ".tmp"


class CheckpointError(ValueError):
    """A checkpoint a run cannot resume from; the message names the file and what is wrong with it."""


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in chunks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _checkpoint_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` (recursively, sorted) that the manifest covers: all but itself and temporaries."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and path.name != MANIFEST and not path.name.endswith(_TEMPORARY_SUFFIX)
    )


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, flush it to disk, then rename it over ``path``."""
    temporary = path.with_name(path.name + _TEMPORARY_SUFFIX)
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_manifest(folder: str | Path) -> Path:
    """Mark ``folder`` complete: write its manifest (size and SHA-256 of every file), last and atomically."""
    folder = Path(folder)
    files = {}
    for path in _checkpoint_files(folder):
        with open(path, "rb") as handle:  # flush each file to disk before the manifest vouches for it
            os.fsync(handle.fileno())
        files[path.relative_to(folder).as_posix()] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
    manifest = folder / MANIFEST
    _write_atomically(manifest, json.dumps({"version": MANIFEST_VERSION, "files": files}, indent=1) + "\n")
    return manifest


def is_complete(folder: str | Path) -> bool:
    """Whether ``folder``'s save finished, i.e. its manifest was written."""
    return (Path(folder) / MANIFEST).is_file()


def verify(folder: str | Path) -> None:
    """Check every file of ``folder`` against its manifest; raise `CheckpointError` naming the first bad one."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        entries = [(name, int(entry["size"]), str(entry["sha256"])) for name, entry in files.items()]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{manifest}: unreadable checkpoint manifest ({type(err).__name__})") from err
    for name, size, sha256 in entries:
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing from the checkpoint (its manifest lists it)")
        actual = path.stat().st_size
        if actual != size:
            raise CheckpointError(
                f"{path}: {actual} bytes, the checkpoint manifest says {size} (truncated or changed)"
            )
        if file_sha256(path) != sha256:
            raise CheckpointError(f"{path}: corrupt, its SHA-256 differs from the checkpoint manifest's")


def checkpoints(output_dir: str | Path) -> list[Path]:
    """The ``checkpoint-N`` folders of ``output_dir``, oldest (smallest N) first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(int(match[1]), path) for path in root.iterdir() if (match := _CHECKPOINT.match(path.name))]
    return [path for _, path in sorted(found) if path.is_dir()]


def newest_complete(output_dir: str | Path) -> tuple[Path | None, list[Path]]:
    """The newest complete checkpoint of ``output_dir`` (None if there is none) and the incomplete ones newer than
    it, which a resume skips."""
    skipped: list[Path] = []
    for folder in reversed(checkpoints(output_dir)):
        if is_complete(folder):
            return folder, skipped[::-1]
        skipped.append(folder)
    return None, skipped[::-1]


def remove_checkpoint(folder: str | Path) -> None:
    """Delete a checkpoint folder, its manifest first, so that a kill midway leaves it incomplete, not corrupt."""
    folder = Path(folder)
    (folder / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)


def rotate(output_dir: str | Path, current: str | Path, limit: int | None, keep: str | Path | None = None) -> None:
    """Keep the ``limit`` newest complete checkpoints (and ``keep``, the best one) up to ``current``; delete the other
    folders older than ``current``. Folders newer than it (left by an earlier, interrupted run) are left alone."""
    if limit is None or limit <= 0:
        return
    current, protected = Path(current), {Path(keep)} if keep else set()
    older = checkpoints(output_dir)
    older = older[: older.index(current) + 1] if current in older else older
    kept = [folder for folder in older if is_complete(folder)][-limit:]
    for folder in older:
        if folder not in kept and folder not in protected:
            remove_checkpoint(folder)


class CompleteCheckpoints:
    """Trainer mixin: each checkpoint gets its manifest once all its files are written (and any state a subclass adds
    in `_save_resume_state`), old ones are rotated out only after that, a resume requires the scheduler, and a run
    resumed at ``max_steps`` trains no further step."""

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        """The Trainer's save into ``checkpoint-N``, then the subclass's resume state, the manifest and the rotation
        (which the Trainer would run before the manifest)."""
        folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        if self.args.should_save:
            (folder / MANIFEST).unlink(missing_ok=True)  # a folder saved into again is incomplete until done
        limit, self.args.save_total_limit = self.args.save_total_limit, None
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        self._save_resume_state(folder)
        self.accelerator.wait_for_everyone()  # every process's files are written
        if self.args.should_save:
            write_manifest(folder)
            rotate(folder.parent, folder, limit, self.state.best_model_checkpoint)

    def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: Any) -> tuple[list, Any]:
        """No batch once ``max_steps`` is reached: the Trainer checks for the end only after a step, so a run resumed
        from its last checkpoint (killed during its final save) would train one step too many."""
        if 0 < self.state.max_steps <= self.state.global_step:
            self.control.should_training_stop = True
            return [], None
        return super().get_batch_samples(epoch_iterator, num_batches, device)

    def _save_resume_state(self, folder: Path) -> None:
        """Write what this trainer needs beyond the Trainer's files to resume exactly (every process; none here)."""

    def _load_resume_state(self, checkpoint: str) -> None:
        """Restore what `_save_resume_state` wrote (none here)."""

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        """The Trainer's restore of optimizer and scheduler, with a missing ``scheduler.pt`` an error (the Trainer
        would silently restart the schedule), then this trainer's resume state."""
        if checkpoint is not None and not (Path(checkpoint) / SCHEDULER_NAME).is_file():
            raise CheckpointError(f"{Path(checkpoint) / SCHEDULER_NAME}: missing, so the schedule cannot resume")
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            self._load_resume_state(checkpoint)
