"""The decision format: vocabularies as BDD-OIA defines them, parsing that never raises, bit conversions."""

from __future__ import annotations

import json
import re

import pytest
from bit_cases import BitCase, bit_cases
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmrl_trl.schema import (
    ACTION_IDS,
    ACTIONS,
    MAX_DEPTH,
    REASON_IDS,
    REASONS,
    Decision,
    ExtractedJSON,
    ParseFailure,
    bits_to_ids,
    check_bits,
    decision_json_schema,
    describe_format,
    extract_json_object,
    parse_decision,
    reason_action_conflicts,
    render_decision,
)


def test_vocabularies_follow_the_label_files_bit_order(shared_labels_dir):
    """The README's bit table (not the paper's) is the order; check names and implied actions against it."""
    readme = (shared_labels_dir / "README.md").read_text()
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \| ([^|]+) \|$", readme, flags=re.M)
    assert len(rows) == 21
    implied = {"forward": ("move_forward", "requires"), "stop": ("stop", "requires")}
    implied |= {f"can turn {s}": (f"turn_{s}", "requires") for s in ("left", "right")}
    implied |= {f"cannot turn {s}": (f"turn_{s}", "forbids") for s in ("left", "right")}
    for (bit, name, implies), reason in zip(rows, REASONS, strict=True):
        assert int(bit) == reason.bit
        assert (reason.action, reason.effect) == implied[implies.strip()], name
        # Each README name shares its key word with our label (e.g. "rider", "solid line on the left").
        key = name.strip().split(":")[-1].split("(")[0].strip().split("/")[0]
        assert key.split()[-1] in reason.label, (name, reason.label)
    assert [a.id for a in ACTIONS] == ["move_forward", "stop", "turn_left", "turn_right"]


def test_shipped_json_schema_matches_vocabularies():
    schema = decision_json_schema()
    assert schema["properties"]["actions"]["items"]["enum"] == list(ACTION_IDS)
    assert schema["properties"]["reasons"]["items"]["enum"] == list(REASON_IDS)
    assert len(set(ACTION_IDS)) == 4 and len(set(REASON_IDS)) == 21
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", i) for i in ACTION_IDS + REASON_IDS)


def test_render_then_parse_round_trips_label_bits():
    actions, reasons = [1, 0, 0, 1], [0] * 21
    reasons[0] = reasons[20] = 1
    text = render_decision(actions, reasons, "A clear road ahead.")
    assert text == (
        '{"scene":"A clear road ahead.","actions":["move_forward","turn_right"],'
        '"reasons":["follow_traffic","solid_right_line"]}'
    )
    decision = parse_decision(text)
    assert isinstance(decision, Decision)
    assert decision.action_bits() == actions and decision.reason_bits() == reasons
    assert Decision.from_bits(actions, reasons, "A clear road ahead.") == decision


@pytest.mark.parametrize(
    "text",
    [
        '```json\n{"scene": "x", "actions": ["stop"], "reasons": ["red_light"]}\n```',
        'Sure! Here it is: {"scene": "x", "actions": ["stop"], "reasons": ["red_light"]} Hope it helps.',
        'noise { not json } then {"scene": "x", "actions": ["stop"], "reasons": ["red_light"]}',
    ],
)
def test_parse_tolerates_fences_and_chatter(text):
    assert parse_decision(text) == Decision("x", ("stop",), ("red_light",))


@pytest.mark.parametrize(
    ("text", "kind", "path"),
    [
        ("", "empty", "$"),
        ("   ", "empty", "$"),
        ("no braces here", "no_json", "$"),
        ("[1, 2]", "no_json", "$"),
        ('{"scene": "x", "actions": [', "invalid_json", "$"),
        ('{"scene": "x", "actions": ["fly"], "reasons": []}', "unknown_id", "$.actions[0]"),
        ('{"scene": "x", "actions": [], "reasons": ["red_light", "bogus"]}', "unknown_id", "$.reasons[1]"),
        ('{"scene": "x", "actions": ["stop", "stop"], "reasons": []}', "schema", "$.actions"),
        ('{"scene": 3, "actions": [], "reasons": []}', "schema", "$.scene"),
        ('{"scene": "x", "actions": []}', "schema", "$"),
        ('{"scene": "x", "actions": [], "reasons": [], "extra": 1}', "schema", "$"),
        ('{"scene": "x", "actions": [1], "reasons": []}', "schema", "$.actions[0]"),
        ('{"scene": "x", "actions": [], "reasons": [null]}', "schema", "$.reasons[0]"),
        ('{"scene": "x", "actions": ["stop", {"a": 1}], "reasons": []}', "schema", "$.actions[1]"),
        ('{"scene": "x", "actions": ["fly", 1], "reasons": []}', "schema", "$.actions[1]"),
    ],
)
def test_parse_failures_are_typed_with_json_path(text, kind, path):
    failure = parse_decision(text)
    assert isinstance(failure, ParseFailure)
    assert (failure.kind, failure.path) == (kind, path)
    assert failure.message


@pytest.mark.parametrize("item", [1, None, {"a": 1}, ["stop"], True])
@pytest.mark.parametrize("field_name", ["actions", "reasons"])
def test_non_string_item_is_a_type_error_not_an_unknown_id(field_name, item):
    """A wrong-type item is structural, like a wrong-type field, whatever ids sit beside it."""
    obj = {"scene": "x", "actions": [], "reasons": []} | {field_name: [item]}
    failure = parse_decision(json.dumps(obj))
    assert isinstance(failure, ParseFailure)
    assert (failure.kind, failure.path) == ("schema", f"$.{field_name}[0]")
    assert "is not of type 'string'" in failure.message
    assert decision_json_schema()["properties"][field_name]["items"]["type"] == "string"


def test_missing_field_failure_names_it():
    failure = parse_decision('{"scene": "x", "actions": []}')
    assert "reasons" in failure.message


def test_extract_reports_text_outside_the_object():
    found = extract_json_object('```json\n{"a": 1}\n```')
    assert found.obj == {"a": 1} and found.outside == ""
    assert extract_json_object('ok {"a": 1} bye').outside == "ok  bye"


def test_deeply_nested_input_does_not_raise():
    assert isinstance(parse_decision("{" + '"a":[' * 100_000), ParseFailure)
    assert isinstance(parse_decision('{"a":' + "[" * 100_000 + "]" * 100_000 + "}"), ParseFailure)


def first_decodable_object(text: str) -> tuple | None:
    """The reference: Python's decoder tried at every "{" in turn (quadratic on long texts)."""
    decoder = json.JSONDecoder()
    for start in [i for i, char in enumerate(text) if char == "{"]:
        try:
            obj, end = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            continue
        return obj, start, end
    return None


def found_object(text: str) -> tuple | None:
    found = extract_json_object(text)
    return None if isinstance(found, ParseFailure) else (found.obj, found.start, found.end)


JSON_PIECES = [
    "{",
    "}",
    "[",
    "]",
    '"',
    ":",
    ",",
    " ",
    "\n",
    "a",
    "1",
    "-",
    ".",
    "e",
    "\\",
    "u",
    "true",
    "null",
    "NaN",
    '"a"',
    '"a":',
    '{"a":',
    '"{"',
    "{}",
    "[]",
    "x",
]
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(alphabet='a{}[]":,\\ ')),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text('ab{"', max_size=2), children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.lists(st.sampled_from(JSON_PIECES), max_size=40).map("".join),
        st.tuples(
            st.text(alphabet='x{"} ', max_size=6), json_values.map(json.dumps), st.text('x{"}] ', max_size=6)
        ).map("".join),
    )
)
def test_the_object_found_is_the_one_decoded_from_the_first_brace_where_one_decodes(text):
    assert repr(found_object(text)) == repr(first_decodable_object(text))


@pytest.mark.parametrize(
    "text",
    [
        '{"a":' * 5000,  # every "{" opens an object that never closes
        '{"a":[' + "1," * 50_000,
        '{"a":[x' * 5000,
        '{"{"' * 5000,
        '{"a":[' + '"{",' * 5000,
        '{"a":1,x' * 5000,
    ],
)
def test_long_texts_without_an_object_fail_with_the_first_braces_error(text):
    failure = extract_json_object(text)
    assert isinstance(failure, ParseFailure) and failure.kind == "invalid_json"
    with pytest.raises((ValueError, RecursionError)) as err:
        json.JSONDecoder().raw_decode(text, text.find("{"))
    assert failure.message == str(err.value)


def test_objects_nested_deeper_than_the_limit_are_not_decoded_but_those_inside_are():
    levels = MAX_DEPTH + 50
    deep = '{"a":' * levels + '{"b":1}' + "}" * levels
    found = extract_json_object(deep)
    too_deep = levels + 1 - MAX_DEPTH  # the outer objects, each nested more than MAX_DEPTH deep with itself
    assert isinstance(found, ExtractedJSON)
    assert (found.start, found.end) == (5 * too_deep, len(deep) - too_deep)
    found = extract_json_object("[" * 10_000 + '{"scene": "x"}' + "]" * 10_000)
    assert found.obj == {"scene": "x"} and found.start == 10_000


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.binary().map(lambda b: b.decode("utf-8", "replace"))))
def test_parse_never_raises(text):
    assert isinstance(parse_decision(text), Decision | ParseFailure)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.sampled_from(ACTION_IDS), unique=True),
    st.lists(st.sampled_from(REASON_IDS), unique=True),
    st.text(),
)
def test_any_valid_decision_round_trips(actions, reasons, scene):
    decision = Decision(scene, tuple(actions), tuple(reasons))
    parsed = parse_decision(decision.to_json())
    assert isinstance(parsed, Decision)
    assert set(parsed.actions) == set(actions) and set(parsed.reasons) == set(reasons)
    assert parsed.scene == scene


def test_bit_vectors_of_wrong_length_are_rejected():
    with pytest.raises(ValueError, match="expected a list of 4 label bits, got 5 values"):
        Decision.from_bits([1, 0, 0, 0, 1], [0] * 21)
    with pytest.raises(ValueError, match="0 or 1"):
        Decision.from_bits([2, 0, 0, 0], [0] * 21)


@pytest.mark.parametrize("case", bit_cases(4), ids=lambda c: c.name)
def test_check_bits_takes_0_1_vectors_of_the_length_and_nothing_else(case: BitCase):
    """The one bit-vector check, and bits_to_ids through it; the other entry points assert the same table."""
    if case.expected is None:
        for check in (lambda: check_bits(case.value, 4), lambda: bits_to_ids(case.value, ACTION_IDS)):
            with pytest.raises(ValueError, match="label bits") as err:
                check()
            assert "\n" not in str(err.value)
        return
    got = check_bits(case.value, 4)
    assert got == case.expected and all(type(b) is int for b in got)
    assert bits_to_ids(case.value, ACTION_IDS) == ("stop",)


def test_check_bits_takes_any_of_several_lengths():
    assert check_bits([0, 1, 0, 0, 1], (4, 5)) == [0, 1, 0, 0, 1]
    with pytest.raises(ValueError, match="expected a list of 4 or 5 label bits, got 3 values"):
        check_bits([0, 1, 0], (4, 5))


def test_reason_action_conflicts():
    ok = Decision("", ("move_forward", "turn_right"), ("road_clear", "solid_left_line", "on_right_turn_lane"))
    assert reason_action_conflicts(ok) == []
    bad = Decision("", ("turn_left",), ("solid_left_line", "red_light"))
    assert reason_action_conflicts(bad) == ["solid_left_line", "red_light"]


def test_format_description_names_every_id():
    text = describe_format()
    assert all(i in text for i in ACTION_IDS + REASON_IDS)
    assert all(f'"{field}"' in text for field in ("scene", "actions", "reasons"))
