"""``vlmrl-trl score``: official BDD-OIA metrics of a predictions file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("score", help="score a predictions.jsonl file with the BDD-OIA metrics")
    p.add_argument("--predictions", required=True, help="JSONL with 'text' and the label bits 'actions', 'reasons'")
    p.add_argument("--out", required=True, help="folder for metrics.json")
    add_skip_option(p)
    p.set_defaults(handler=run)


def add_skip_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="score the good lines of a damaged file (e.g. a truncated last line), saying how many were skipped",
    )


def read_checked(predictions: str | Path, skip_invalid: bool = False) -> list[dict[str, Any]]:
    """The records of a predictions file; a bad line stops it, naming ``--skip-invalid``, which instead skips bad
    lines and says how many."""
    from ..metrics import read_predictions

    skipped: list[str] | None = [] if skip_invalid else None
    try:
        records = read_predictions(predictions, skipped)
    except ValueError as err:
        if skip_invalid or "--skip-invalid" in str(err):
            raise
        raise ValueError(f"{err} (--skip-invalid scores the other lines)") from None
    if skipped:
        print(f"skipped {len(skipped)} invalid line{'s' * (len(skipped) > 1)} of {predictions} (first: {skipped[0]})")
    return records


def score_file(
    predictions: str | Path, out_dir: str | Path, skip_invalid: bool = False
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Score a predictions file, print the metrics table and write ``metrics.json`` (``score`` and ``eval``)."""
    from ..metrics import format_metrics_table, score_records, write_metrics

    records = read_checked(predictions, skip_invalid)
    metrics = score_records(records)
    print(format_metrics_table(metrics))
    print(f"\nwrote {write_metrics(metrics, out_dir)}")
    return records, metrics


def run(args: argparse.Namespace) -> int:
    score_file(args.predictions, args.out, skip_invalid=args.skip_invalid)
    return 0
