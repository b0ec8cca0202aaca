"""BDD-OIA metrics, as the official evaluator defines them, plus the JSON validity of raw outputs.

Every function scores over a label set (:mod:`vlmrl_trl.labels`, option ``labels``), BDD-OIA's by default.

Per class: binary precision/recall/F1 (sklearn's ``average=None``). ``mf1``: mean of the per-class F1s.
``f1_all``: F1 averaged over samples (``average="samples"``), a sample with no true and no predicted
label scoring 0. Undefined ratios count as 0, as sklearn's default does. ``accuracy`` is per label bit
(Hamming accuracy; high on the mostly-zero reason bits), ``exact_match`` per sample.

``json_validity``: the fraction of outputs from which a schema-valid decision is read (their first JSON
object, as scoring reads it); ``strict_json_validity``: the fraction that are such an object and nothing
else (whitespace aside), the method's Stage 3 format.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .facts import format_fact_table, record_fact_agreement
from .labels import BDDOIA, LabelSet
from .schema import Decision, ParseFailure, check_bits, extract_json_object, validate_decision_obj


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den != 0)


def multilabel_metrics(y_true: Any, y_pred: Any, names: Sequence[str]) -> dict[str, Any]:
    """All metrics of one label group (actions or reasons) for 0/1 matrices of shape (n, len(names))."""
    t, p = _bit_matrix(y_true, len(names), "labels"), _bit_matrix(y_pred, len(names), "predictions")
    if t.shape != p.shape:
        raise ValueError(f"labels {t.shape} and predictions {p.shape} differ in shape")
    tp, fp, fn = (t & p).sum(0), ((1 - t) & p).sum(0), (t & (1 - p)).sum(0)
    precision, recall = _safe_div(tp, tp + fp), _safe_div(tp, tp + fn)
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    s_tp, s_fp, s_fn = (t & p).sum(1), ((1 - t) & p).sum(1), (t & (1 - p)).sum(1)
    n = len(t)
    return {
        "f1_all": float(_safe_div(2 * s_tp, 2 * s_tp + s_fp + s_fn).mean()) if n else 0.0,
        "mf1": float(f1.mean()),
        "micro_f1": float(_safe_div(np.array(2 * tp.sum()), np.array(2 * tp.sum() + fp.sum() + fn.sum()))),
        "exact_match": float((t == p).all(1).mean()) if n else 0.0,
        "accuracy": float((t == p).mean()) if n else 0.0,
        "per_class": {name: float(v) for name, v in zip(names, f1, strict=True)},
        "per_class_precision": {name: float(v) for name, v in zip(names, precision, strict=True)},
        "per_class_recall": {name: float(v) for name, v in zip(names, recall, strict=True)},
        "support": {name: int(v) for name, v in zip(names, t.sum(0), strict=True)},
    }


def _bit_matrix(rows: Any, size: int, what: str) -> np.ndarray:
    """``rows`` (a list or array of label-bit rows) as an (n, ``size``) int matrix, each row checked by
    :func:`~vlmrl_trl.schema.check_bits`; the error names the first bad row."""
    try:
        rows = list(rows)
    except TypeError:  # a number, a 0-D array
        raise ValueError(f"{what} must be 0/1 bits in a matrix of shape (n, {size}), got {rows!r}") from None
    checked = []
    for i, row in enumerate(rows):
        try:
            checked.append(check_bits(row, size))
        except ValueError as err:
            raise ValueError(f"{what} must be 0/1 bits in a matrix of shape (n, {size}); row {i}: {err}") from None
    return np.array(checked, dtype=np.int64).reshape(-1, size)


def decision_metrics(
    outputs: Sequence[str], action_labels: Any, reason_labels: Any, labels: LabelSet = BDDOIA
) -> dict[str, Any]:
    """Score raw model outputs against label bits: an unparseable output predicts no label at all."""
    if not (len(outputs) == len(action_labels) == len(reason_labels)):
        raise ValueError("outputs, action labels and reason labels must have the same length")
    found = [extract_json_object(text) for text in outputs]  # parse_decision, keeping what surrounds each object
    parsed = [f if isinstance(f, ParseFailure) else validate_decision_obj(f.obj, labels) for f in found]
    decisions = [d for d in parsed if isinstance(d, Decision)]
    strict = sum(isinstance(d, Decision) and f.alone for d, f in zip(parsed, found, strict=True))
    pred_actions = [d.action_bits(labels) if isinstance(d, Decision) else [0] * labels.num_actions for d in parsed]
    pred_reasons = [d.reason_bits(labels) if isinstance(d, Decision) else [0] * labels.num_reasons for d in parsed]
    n = len(outputs)
    return {
        "actions": multilabel_metrics(action_labels, pred_actions, labels.action_ids),
        "reasons": multilabel_metrics(reason_labels, pred_reasons, labels.reason_ids),
        "json_validity": len(decisions) / n if n else 0.0,
        "strict_json_validity": strict / n if n else 0.0,
        "n": n,
    }


def _check_bits(value: Any, size: int, where: str, key: str) -> list[int]:
    """A predictions line's label field as bits; the error names the line (``where``) and the field."""
    try:
        return check_bits(value, size)
    except ValueError as err:
        raise ValueError(f"{where}: field {key!r}: {err}") from None


def read_predictions(
    path: str | Path, skipped: list[str] | None = None, labels: LabelSet = BDDOIA
) -> list[dict[str, Any]]:
    """Read a ``predictions.jsonl`` file: one object per line with ``text`` (the raw model output) and
    the label bits ``actions`` and ``reasons`` (BDD-OIA: 4 and 21). Errors name the file, line and field; with a
    ``skipped`` list, a bad line (a truncated last one too) is appended to it instead and reading goes on."""
    path = Path(path)
    records = []
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise ValueError(
                        f"{path}:{lineno}: not UTF-8 text (byte {err.start}: {raw[err.start : err.start + 1]!r})"
                    ) from None
                records.append(_prediction_line(line, f"{path}:{lineno}", labels))
            except ValueError as err:
                if skipped is None:
                    raise
                skipped.append(str(err))
    if not records:
        raise ValueError(f"{path}: no predictions")
    return records


def _prediction_line(line: str, where: str, labels: LabelSet) -> dict[str, Any]:
    """One checked line of a predictions file; ``where`` (file:line) prefixes its errors."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: not a JSON object ({err})") from None
    if not isinstance(rec, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    if not isinstance(rec.get("text"), str):
        raise ValueError(f"{where}: field 'text' (the raw model output) must be a string")
    rec["actions"] = _check_bits(rec.get("actions"), labels.num_actions, where, "actions")
    rec["reasons"] = _check_bits(rec.get("reasons"), labels.num_reasons, where, "reasons")
    return rec


def score_records(records: Iterable[Mapping[str, Any]], labels: LabelSet = BDDOIA) -> dict[str, Any]:
    """Metrics of prediction records as written by ``vlmrl-trl predict``; ``facts`` (description-fact agreement,
    :mod:`vlmrl_trl.facts`) when the clips' facts are known, as for synthetic clips."""
    records = list(records)
    metrics = decision_metrics(
        [r["text"] for r in records], [r["actions"] for r in records], [r["reasons"] for r in records], labels
    )
    facts = record_fact_agreement(records)
    return metrics if facts is None else {**metrics, "facts": facts}


def format_metrics_table(metrics: Mapping[str, Any]) -> str:
    """A plain-text table of the headline numbers and per-class F1."""
    lines = [
        f"n = {metrics['n']}   JSON validity = {metrics['json_validity']:.4f}   "
        f"(strict, nothing but the JSON: {metrics['strict_json_validity']:.4f})",
        "",
    ]
    keys = ("f1_all", "mf1", "micro_f1", "exact_match", "accuracy")
    lines.append(f"{'':10}" + "".join(f"{k:>13}" for k in keys))
    for group in ("actions", "reasons"):
        lines.append(f"{group:10}" + "".join(f"{metrics[group][k]:>13.4f}" for k in keys))
    for group in ("actions", "reasons"):
        lines += ["", f"per-class F1 ({group})"]
        for name, value in metrics[group]["per_class"].items():
            lines.append(f"  {name:26} {value:.4f}  (support {metrics[group]['support'][name]})")
    if "facts" in metrics:
        lines += ["", format_fact_table(metrics["facts"])]
    return "\n".join(lines)


def write_metrics(metrics: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write ``metrics.json`` into ``out_dir`` and return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return path
