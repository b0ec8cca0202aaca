"""Fault injection on the stage scripts: ``kill -9`` at random moments and corrupted checkpoints, on the tiny recipes.

For SFT, GRPO (``num_iterations`` 1 and 2) and PPO, each on its tiny recipe with a few steps and a checkpoint every
2 or 3 steps, it first runs the command uninterrupted (twice: the reference weights, and a check that they repeat).
Then, per kill, a fresh run of the same command is killed with SIGKILL, half of the time at a uniformly random
moment of the run, half just after a checkpoint folder appears or its manifest is written (during a save or the
rotation of the old checkpoint), and the same command is run again: it must finish with final weights
(``*.safetensors`` of output_dir, tensor bytes) identical to the reference. Per corruption, the output_dir holds a
complete mid-run checkpoint in which one file is flipped (one byte), truncated (to half) or deleted, and the same
command must refuse with one error line naming that file (deleting the manifest makes the checkpoint incomplete:
the run must start afresh and end identical).

    python benchmarks/fault_injection.py                       # 4 kills per stage, every file corrupted once
    python benchmarks/fault_injection.py --kills 20 --all-corruptions --out fault_injection.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vlmrl_trl.checkpoints import MANIFEST, checkpoints, is_complete

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY = REPO_ROOT / "recipes" / "tiny"
KINDS = ("flip", "truncate", "delete")


@dataclass
class Scenario:
    """One stage command: module, recipe and the overrides that make it a few-step run."""

    name: str
    module: str
    recipe: Path
    overrides: tuple[str, ...]
    saves: int  # checkpoints the run writes

    def command(self, model: Path, data: Path, output_dir: Path) -> list[str]:
        return [
            sys.executable, "-m", self.module, "--config", str(self.recipe),
            "--model_name_or_path", str(model), "--data_dir", str(data), "--output_dir", str(output_dir),
            "--num_frames", "2", "--disable_tqdm", "true", "--save_strategy", "steps", "--save_total_limit", "1",
            *self.overrides,
        ]  # fmt: skip


GRPO = ("--per_device_train_batch_size", "4", "--num_generations", "2", "--max_completion_length", "8")
SCENARIOS = {
    "sft": Scenario(
        "sft",
        "vlmrl_trl.sft",
        TINY / "sft" / "config_synthetic.yaml",
        ("--per_device_train_batch_size", "2", "--max_steps", "6", "--save_steps", "2"),
        3,
    ),
    "grpo": Scenario(
        "grpo",
        "vlmrl_trl.grpo",
        TINY / "grpo" / "config_stage2.yaml",
        (*GRPO, "--max_steps", "6", "--save_steps", "2"),
        3,
    ),
    "grpo-iter2": Scenario(  # checkpoint-3 falls mid-phase: its batch is reused by step 4
        "grpo-iter2",
        "vlmrl_trl.grpo",
        TINY / "grpo" / "config_stage2.yaml",
        (*GRPO, "--num_iterations", "2", "--max_steps", "6", "--save_steps", "3"),
        2,
    ),
    "ppo": Scenario(
        "ppo",
        "vlmrl_trl.ppo",
        TINY / "ppo" / "config_stage1.yaml",
        (
            "--per_device_train_batch_size",
            "2",
            "--max_completion_length",
            "6",
            "--max_steps",
            "6",
            "--save_steps",
            "2",
            "--critic_warmup_steps",
            "2",
            "--r1_eval_samples",
            "0",
            "--reward_kwargs",
            json.dumps({"clip_alignment": {"device": "cpu"}}),  # the untrained tiny CLIP
        ),  # fmt: skip
        3,
    ),
}


@dataclass
class Result:
    """What happened to one stage: the reference, each kill and each corruption."""

    scenario: str
    reference_seconds: float = 0.0
    reference_repeats: bool = False
    kills: list[dict] = field(default_factory=list)
    corruptions: list[dict] = field(default_factory=list)


def run_env() -> dict[str, str]:
    """The stage scripts' environment: one thread, offline."""
    return os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, env=run_env(), check=False)


def weights_digest(output_dir: Path) -> str | None:
    """SHA-256 over the names, dtypes, shapes and bytes of every tensor in output_dir's ``*.safetensors``."""
    import torch
    from safetensors.torch import load_file

    files = sorted(output_dir.glob("*.safetensors"))
    if not files:
        return None
    digest = hashlib.sha256()
    for file in files:
        tensors = load_file(file)
        for name in sorted(tensors):
            tensor = tensors[name].contiguous()
            digest.update(f"{file.name}/{name}/{tensor.dtype}/{tuple(tensor.shape)}".encode())
            digest.update(tensor.view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def landed(output_dir: Path) -> str:
    """Where a kill landed, read from what it left in output_dir (which keeps one checkpoint between saves)."""
    folders = checkpoints(output_dir)
    if not folders:
        return "before the first checkpoint"
    if not is_complete(folders[-1]):
        return "during a save"
    if len(folders) > 1:
        return "during rotation"
    if (output_dir / "config.json").is_file():
        return "during the final save"
    return "between saves"


def kill_run(command: list[str], output_dir: Path, mode: str, horizon: float, saves: int, rng: random.Random) -> str:
    """Start ``command``, SIGKILL it (``random``: after a uniform delay up to ``horizon`` s; ``save``: just after a
    checkpoint folder appears; ``rotate``: just after a manifest appears), and say where the kill landed."""
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=run_env(), start_new_session=True
    )
    start = time.monotonic()
    deadline = start + rng.uniform(0.0, horizon)
    seen: set[str] = set()
    target = rng.randint(1, saves)  # which checkpoint's save (or rotation) to strike at
    while process.poll() is None:
        now = time.monotonic()
        if mode == "random" and now >= deadline:
            break
        if mode != "random":
            marker = "" if mode == "save" else MANIFEST
            events = {f.name for f in checkpoints(output_dir) if not marker or (f / marker).is_file()}
            seen |= events
            if len(seen) >= target:
                time.sleep(rng.uniform(0.0, 0.15 if mode == "save" else 0.02))
                break
        time.sleep(0.002)
    if process.poll() is not None:
        return "after the run ended"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return landed(output_dir)


def corrupt(path: Path, kind: str, rng: random.Random) -> None:
    """Flip one byte of ``path``, truncate it to half, or delete it."""
    if kind == "delete":
        path.unlink()
        return
    data = bytearray(path.read_bytes())
    if kind == "flip":
        data[rng.randrange(len(data))] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))


def refused_naming(process: subprocess.CompletedProcess, path: Path) -> bool:
    """Whether the run exited 2 with exactly one error line, and that line names ``path``."""
    errors = [line for line in process.stderr.splitlines() if ": error: " in line]
    return process.returncode == 2 and len(errors) == 1 and str(path) in errors[0]


def inject(scenario: Scenario, work: Path, kills: int, corruptions: str, rng: random.Random) -> Result:
    """Reference runs, then the kills and the corruptions of one scenario."""
    model, data = work / "tiny-vlm", work / "synthetic"
    result = Result(scenario.name)
    reference = work / scenario.name / "reference"
    start = time.monotonic()
    done = run(scenario.command(model, data, reference))
    result.reference_seconds = time.monotonic() - start
    if done.returncode != 0:
        raise RuntimeError(f"{scenario.name}: the uninterrupted run failed:\n{done.stderr[-3000:]}")
    expected = weights_digest(reference)
    repeat = work / scenario.name / "repeat"
    run(scenario.command(model, data, repeat))
    result.reference_repeats = weights_digest(repeat) == expected
    shutil.rmtree(repeat)

    for index in range(kills):
        mode = ("random", "save", "random", "rotate")[index % 4]
        output_dir = work / scenario.name / f"kill-{index}"
        command = scenario.command(model, data, output_dir)
        where = kill_run(command, output_dir, mode, result.reference_seconds, scenario.saves, rng)
        rerun = run(command)
        identical = rerun.returncode == 0 and weights_digest(output_dir) == expected
        result.kills.append({"mode": mode, "landed": where, "rerun_rc": rerun.returncode, "identical": identical})
        if not identical:
            result.kills[-1]["stderr_tail"] = rerun.stderr[-2000:]
        shutil.rmtree(output_dir)

    if corruptions == "none":
        return result
    # A run killed after its second-last checkpoint: an output_dir holding only that (complete) checkpoint.
    kept = work / scenario.name / "all-checkpoints"
    run([*scenario.command(model, data, kept), "--save_total_limit", "100"])
    base = checkpoints(kept)[-2]
    files = sorted(p.relative_to(base) for p in base.rglob("*") if p.is_file())
    for number, name in enumerate(files):
        for kind in KINDS if corruptions == "all" else (KINDS[number % len(KINDS)],):
            output_dir = work / scenario.name / "corrupt"
            shutil.copytree(base, output_dir / base.name)
            target = output_dir / base.name / name
            corrupt(target, kind, rng)
            rerun = run(scenario.command(model, data, output_dir))
            entry = {"file": str(name), "kind": kind, "rc": rerun.returncode}
            if str(name) == MANIFEST and kind == "delete":
                entry["outcome"] = (
                    "ignored, identical" if rerun.returncode == 0 and weights_digest(output_dir) == expected else "BAD"
                )
            else:
                entry["outcome"] = "refused naming it" if refused_naming(rerun, target) else "BAD"
            if entry["outcome"] == "BAD":
                entry["stderr_tail"] = rerun.stderr[-2000:]
            result.corruptions.append(entry)
            shutil.rmtree(output_dir)
    shutil.rmtree(kept)
    return result


def table(results: list[Result]) -> str:
    """The summary table: per stage, kills survived with identical weights and corruptions refused by name."""
    lines = [
        "| stage | uninterrupted s | repeats | kills identical | landed during save/rotation | corruptions handled |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        identical = sum(k["identical"] for k in r.kills)
        in_save = sum(k["landed"] in ("during a save", "during rotation", "during the final save") for k in r.kills)
        handled = sum(c["outcome"] != "BAD" for c in r.corruptions)
        lines.append(
            f"| {r.scenario} | {r.reference_seconds:.1f} | {'yes' if r.reference_repeats else 'NO'} | "
            f"{identical}/{len(r.kills)} | {in_save}/{len(r.kills)} | {handled}/{len(r.corruptions)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=4, help="kill -9 runs per stage (default 4)")
    parser.add_argument("--stages", nargs="+", choices=sorted(SCENARIOS), default=list(SCENARIOS))
    corruption = parser.add_mutually_exclusive_group()
    corruption.add_argument(
        "--all-corruptions", action="store_true", help="flip, truncate and delete every file (default: one each)"
    )
    corruption.add_argument("--no-corruptions", action="store_true", help="kills only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="where the runs go (default: a temporary folder, removed)")
    parser.add_argument("--out", type=Path, default=Path("outputs/fault_injection.json"))
    args = parser.parse_args(argv)

    from vlmrl_trl.data.synthetic import generate_synthetic
    from vlmrl_trl.models import build_tiny_vlm

    rng = random.Random(args.seed)
    corruptions = "none" if args.no_corruptions else "all" if args.all_corruptions else "one"
    with tempfile.TemporaryDirectory() as scratch:
        work = args.workdir or Path(scratch)
        if not (work / "tiny-vlm" / "config.json").is_file():
            build_tiny_vlm(work / "tiny-vlm")
        if not (work / "synthetic").is_dir():
            generate_synthetic(work / "synthetic", train=16, val=2, test=4, num_frames=2)
        results = []
        for name in args.stages:
            started = time.monotonic()
            results.append(inject(SCENARIOS[name], work, args.kills, corruptions, rng))
            print(f"{name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n", encoding="utf-8")
    bad = [k for r in results for k in r.kills if not k["identical"]]
    bad += [c for r in results for c in r.corruptions if c["outcome"] == "BAD"]
    return 1 if bad or not all(r.reference_repeats for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
