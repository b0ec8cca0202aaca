"""``vlmrl-trl score``: official BDD-OIA metrics of a predictions file."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("score", help="score a predictions.jsonl file with the BDD-OIA metrics")
    p.add_argument("--predictions", required=True, help="JSONL with 'text' and the label bits 'actions', 'reasons'")
    p.add_argument("--out", required=True, help="folder for metrics.json")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..metrics import format_metrics_table, read_predictions, score_records, write_metrics

    metrics = score_records(read_predictions(args.predictions))
    print(format_metrics_table(metrics))
    print(f"\nwrote {write_metrics(metrics, args.out)}")
    return 0
