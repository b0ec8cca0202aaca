"""BDD-OIA metrics agree with scikit-learn (the official evaluator's definitions) and with the paper's floors."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from bit_cases import BitCase, bit_cases, json_bit_cases
from sklearn.metrics import f1_score, precision_score, recall_score

from vlmrl_trl.cli import main
from vlmrl_trl.metrics import decision_metrics, multilabel_metrics, read_predictions
from vlmrl_trl.schema import ACTION_IDS, REASON_IDS, render_decision


def sklearn_reference(t: np.ndarray, p: np.ndarray) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ill-defined ratios count as 0, as in the official evaluator
        return {
            "per_class": f1_score(t, p, average=None),
            "precision": precision_score(t, p, average=None),
            "recall": recall_score(t, p, average=None),
            "f1_all": f1_score(t, p, average="samples"),
            "micro_f1": f1_score(t, p, average="micro"),
        }


def assert_matches_sklearn(t: np.ndarray, p: np.ndarray, names) -> None:
    ours, ref = multilabel_metrics(t, p, names), sklearn_reference(t, p)
    np.testing.assert_allclose(list(ours["per_class"].values()), ref["per_class"], atol=1e-12)
    np.testing.assert_allclose(list(ours["per_class_precision"].values()), ref["precision"], atol=1e-12)
    np.testing.assert_allclose(list(ours["per_class_recall"].values()), ref["recall"], atol=1e-12)
    assert ours["mf1"] == pytest.approx(ref["per_class"].mean(), abs=1e-12)
    assert ours["f1_all"] == pytest.approx(ref["f1_all"], abs=1e-12)
    assert ours["micro_f1"] == pytest.approx(ref["micro_f1"], abs=1e-12)
    assert ours["exact_match"] == pytest.approx((t == p).all(1).mean())
    assert ours["accuracy"] == pytest.approx((t == p).mean())


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("names", "density"), [(ACTION_IDS, 0.5), (REASON_IDS, 0.15)])
def test_random_labels_match_sklearn(seed, names, density):
    rng = np.random.default_rng(seed)
    t = (rng.random((200, len(names))) < density).astype(int)
    p = (rng.random((200, len(names))) < density).astype(int)
    assert_matches_sklearn(t, p, names)


def test_edge_cases_match_sklearn():
    t = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0]])
    p = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]])
    assert_matches_sklearn(t, p, ACTION_IDS)  # all-zero rows, classes 2 and 3 never present
    m = multilabel_metrics(t, p, ACTION_IDS)
    # Sample 0 has no true and no predicted label and scores 0, as the official evaluator does.
    assert m["f1_all"] == pytest.approx((0 + 0 + 0 + 1) / 4)
    assert m["per_class"]["turn_left"] == 0.0
    assert_matches_sklearn(np.zeros((3, 4), int), np.zeros((3, 4), int), ACTION_IDS)
    assert_matches_sklearn(np.ones((3, 4), int), np.ones((3, 4), int), ACTION_IDS)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        multilabel_metrics(np.zeros((3, 4)), np.zeros((2, 4)), ACTION_IDS)


def _load_test_labels(shared_labels_dir):
    actions = json.loads((shared_labels_dir / "test_25k_images_actions.json").read_text())
    reasons = {
        r["file_name"]: r["reason"]
        for r in json.loads((shared_labels_dir / "test_25k_images_reasons.json").read_text())
    }
    rows = [(actions["annotations"][img["id"]]["category"], reasons[img["file_name"]]) for img in actions["images"]]
    rows = [(a[:4], r) for a, r in rows if len(a) == 4 or a[4] == 0]  # the official loader drops `confuse`
    return np.array([a for a, _ in rows]), np.array([r for _, r in rows])


def test_constant_predictors_reproduce_the_published_floors(shared_labels_dir):
    """The README's floors on the test split: {forward, stop} always -> F1_all 0.577, mF1 0.334;
    all four always -> F1_all 0.541, mF1 0.553."""
    actions, reasons = _load_test_labels(shared_labels_dir)
    assert len(actions) == 4548
    fs = multilabel_metrics(actions, np.tile([1, 1, 0, 0], (len(actions), 1)), ACTION_IDS)
    assert (round(fs["f1_all"], 3), round(fs["mf1"], 3)) == (0.577, 0.334)
    every = multilabel_metrics(actions, np.ones_like(actions), ACTION_IDS)
    assert (round(every["f1_all"], 3), round(every["mf1"], 3)) == (0.541, 0.553)
    assert_matches_sklearn(reasons, np.tile(reasons.mean(0) > 0.3, (len(reasons), 1)).astype(int), REASON_IDS)


def test_decision_metrics_scores_raw_outputs_and_json_validity():
    outputs = [
        render_decision([1, 0, 0, 0], [1] + [0] * 20, "clear"),
        "not json at all",
        '{"scene": "x", "actions": ["fly"], "reasons": []}',
    ]
    labels_a = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0]]
    labels_r = [[1] + [0] * 20, [0] * 21, [0] * 21]
    m = decision_metrics(outputs, labels_a, labels_r)
    assert m["n"] == 3 and m["json_validity"] == pytest.approx(1 / 3)
    assert m["actions"]["f1_all"] == pytest.approx(1 / 3)  # invalid outputs predict nothing
    assert m["actions"]["per_class"]["move_forward"] == 1.0 and m["actions"]["per_class"]["stop"] == 0.0


def test_strict_json_validity_wants_nothing_but_the_json():
    """A decision read out of prose or a code fence counts for `json_validity`, not for the strict rate."""
    decision = render_decision([1, 0, 0, 0], [1] + [0] * 20, "clear")
    outputs = [decision, f"  {decision}\n", f"Sure! {decision}", f"```json\n{decision}\n```", "no json"]
    m = decision_metrics(outputs, [[1, 0, 0, 0]] * 5, [[1] + [0] * 20] * 5)
    assert m["json_validity"] == pytest.approx(4 / 5)
    assert m["strict_json_validity"] == pytest.approx(2 / 5)


@pytest.mark.parametrize(
    ("labels", "message"),
    [([[1, 0, -1, 0]], "must be 0/1 bits"), ([[1, 0, 0, 0, 1]], r"shape \(n, 4\)"), ([1, 0, 0, 0], r"shape \(n, 4\)")],
)
def test_malformed_label_matrices_are_rejected(labels, message):
    with pytest.raises(ValueError, match=message):
        multilabel_metrics(labels, [[1, 0, 1, 0]], ACTION_IDS)


def _write_predictions(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_score_command_writes_metrics_json(tmp_path, capsys):
    records = [
        {
            "clip_id": "a",
            "text": render_decision([0, 1, 0, 0], [0] * 7 + [1] + [0] * 13, "red light"),
            "actions": [0, 1, 0, 0],
            "reasons": [0] * 7 + [1] + [0] * 13,
        },
        {"clip_id": "b", "text": "garbage", "actions": [1, 0, 0, 0], "reasons": [0] * 21},
    ]
    _write_predictions(tmp_path / "preds.jsonl", records)
    assert main(["score", "--predictions", str(tmp_path / "preds.jsonl"), "--out", str(tmp_path / "out")]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics) == {"actions", "reasons", "json_validity", "strict_json_validity", "n"}
    for group, ids in (("actions", ACTION_IDS), ("reasons", REASON_IDS)):
        assert {"f1_all", "mf1", "micro_f1", "exact_match", "accuracy", "per_class"} <= set(metrics[group])
        assert list(metrics[group]["per_class"]) == list(ids)
    assert metrics["n"] == 2 and metrics["json_validity"] == 0.5
    assert metrics["actions"]["f1_all"] == 0.5
    assert "JSON validity = 0.5000" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"preds\.jsonl:2: not a JSON object"),
        ('{"text": 1, "actions": [0,0,0,0], "reasons": []}', r"preds\.jsonl:2: field 'text'"),
        ('{"text": "x", "actions": [0,0,1], "reasons": []}', r"preds\.jsonl:2: field 'actions': expected a list of 4"),
    ],
)
def test_malformed_prediction_lines_name_file_line_and_field(tmp_path, line, message, capsys):
    good = {"text": "x", "actions": [0, 0, 0, 0], "reasons": [0] * 21}
    (tmp_path / "preds.jsonl").write_text(json.dumps(good) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=message):
        read_predictions(tmp_path / "preds.jsonl")
    assert main(["score", "--predictions", str(tmp_path / "preds.jsonl"), "--out", str(tmp_path)]) == 2
    assert "preds.jsonl:2" in capsys.readouterr().err


@pytest.mark.parametrize("case", bit_cases(4), ids=lambda c: c.name)
def test_label_matrix_rows_are_checked_as_bit_vectors(case: BitCase):
    """A row of labels or predictions is taken or refused as check_bits decides (tests/bit_cases.py)."""
    if case.expected is None:
        for labels, predictions in (([case.value], [[0, 1, 0, 0]]), ([[0, 1, 0, 0]], [case.value])):
            with pytest.raises(ValueError, match=r"must be 0/1 bits in a matrix of shape \(n, 4\); row 0: "):
                multilabel_metrics(labels, predictions, ACTION_IDS)
        return
    assert multilabel_metrics([case.value], [[0, 1, 0, 0]], ACTION_IDS)["exact_match"] == 1.0


@pytest.mark.parametrize("case", json_bit_cases(4), ids=lambda c: c.name)
def test_prediction_label_fields_are_checked_as_bit_vectors(tmp_path, case: BitCase):
    """A predictions line's ``actions`` is read as check_bits decides; a refusal names the file, line and field."""
    line = {"text": "x", "actions": case.value, "reasons": [0] * 21}
    _write_predictions(tmp_path / "preds.jsonl", [line])
    if case.expected is None:
        with pytest.raises(ValueError, match=r"preds\.jsonl:1: field 'actions': .*label bits"):
            read_predictions(tmp_path / "preds.jsonl")
        return
    assert read_predictions(tmp_path / "preds.jsonl")[0]["actions"] == case.expected
