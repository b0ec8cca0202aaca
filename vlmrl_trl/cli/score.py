"""``vlmrl-trl score``: official BDD-OIA metrics of a predictions file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("score", help="score a predictions.jsonl file with the BDD-OIA metrics")
    p.add_argument("--predictions", required=True, help="JSONL with 'text' and the label bits 'actions', 'reasons'")
    p.add_argument("--out", required=True, help="folder for metrics.json")
    p.set_defaults(handler=run)


def score_file(predictions: str | Path, out_dir: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Score a predictions file, print the metrics table and write ``metrics.json`` (``score`` and ``eval``)."""
    from ..metrics import format_metrics_table, read_predictions, score_records, write_metrics

    records = read_predictions(predictions)
    metrics = score_records(records)
    print(format_metrics_table(metrics))
    print(f"\nwrote {write_metrics(metrics, out_dir)}")
    return records, metrics


def run(args: argparse.Namespace) -> int:
    score_file(args.predictions, args.out)
    return 0
