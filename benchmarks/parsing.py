"""Worst-case cost of reading a model's answer: one reward call (and one ``eval`` scoring) on a single huge completion.

Each case is a text of about ``--megabytes`` MB built to defeat a JSON search (braces everywhere, objects that
never close, nesting far deeper than any decoder goes, an object only at the very end, random bytes). Each of the
three rewards scores it once, as TRL would call it with one completion, and ``decision_metrics`` (what
``vlmrl-trl score``/``eval`` run) scores it once; the table gives seconds per call.

    python benchmarks/parsing.py                     # 10 MB texts, the untrained vlmrl-tiny CLIP
    python benchmarks/parsing.py --megabytes 1 --json parsing.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from vlmrl_trl.clip import TINY_CLIP, load_clip
from vlmrl_trl.metrics import decision_metrics
from vlmrl_trl.rewards import ActionReasoningReward, ClipAlignmentReward, StructureReward

DECISION = '{"scene": "a red light ahead", "actions": ["stop"], "reasons": ["red_light"]}'


def cases(size: int, seed: int = 0) -> dict[str, str]:
    """Texts of about ``size`` characters, each a worst case for a search that decodes at every "{"."""
    rng = random.Random(seed)
    repeat = lambda piece: piece * (size // len(piece))  # noqa: E731
    return {
        "braces": repeat("{"),
        "brace_quote": repeat('{"'),
        "garbage": "".join(rng.choice('{}[]":,ab1 \n\\') for _ in range(size)),
        "random_bytes": rng.randbytes(size).decode("utf-8", "replace"),
        "open_objects": repeat('{"a":'),
        "open_arrays": '{"a":' + repeat("["),
        "open_mixed": repeat('{"a":['),
        "long_array": '{"a":[' + repeat("1,"),
        "closes_then_fails": repeat('{"a":[1]x'),
        "braces_in_strings": '{"a":[' + repeat('"{",'),
        "flat_then_fails": repeat('{"a":1,x'),
        "answer_at_the_end": repeat("x") + DECISION,
        "long_scene": '{"scene": "' + repeat("a red light ") + '", "actions": ["stop"], "reasons": []}',
    }


def seconds(scorer: Callable[[str], object], text: str) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    scorer(text)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=float, default=10.0, help="size of each text (default: 10)")
    parser.add_argument("--json", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    size = int(args.megabytes * 1_000_000)
    frames = [[Image.new("RGB", (64, 64), (120, 40, 40))]]
    labels = {"actions": [[0, 1, 0, 0]], "reasons": [[0] * 7 + [1] + [0] * 13]}
    structure, action_reasoning = StructureReward(), ActionReasoningReward()
    clip_alignment = ClipAlignmentReward(encoder=load_clip(TINY_CLIP, device="cpu"))
    scorers: dict[str, Callable[[str], object]] = {
        "structure": lambda text: structure([None], [text]),
        "action_reasoning": lambda text: action_reasoning([None], [text], **labels),
        "clip_alignment": lambda text: clip_alignment([None], [text], images=frames),
        "eval": lambda text: decision_metrics([text], labels["actions"], labels["reasons"]),
    }
    for scorer in scorers.values():  # warm up: the CLIP's first call, the schema validator
        scorer(DECISION)
    rows = []
    print(f"{'case':20s} {'MB':>5s} " + " ".join(f"{name:>16s}" for name in scorers))
    for name, text in cases(size).items():
        row = {"case": name, "chars": len(text)} | {s: round(seconds(f, text), 4) for s, f in scorers.items()}
        rows.append(row)
        print(f"{name:20s} {len(text) / 1e6:5.1f} " + " ".join(f"{row[s]:16.3f}" for s in scorers))
    worst = {s: max(row[s] for row in rows) for s in scorers}
    print(f"{'worst':20s} {'':5s} " + " ".join(f"{worst[s]:16.3f}" for s in scorers))
    if args.json is not None:
        report = {"megabytes": args.megabytes, "python": platform.python_version(), "rows": rows, "worst": worst}
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
