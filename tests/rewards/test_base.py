"""Completion text extraction shared by every reward."""

from __future__ import annotations

from vlmrl_trl.rewards.base import completion_text


def test_plain_and_conversational_completions_give_the_assistant_text():
    assert completion_text("plain") == "plain"
    assert completion_text([{"role": "assistant", "content": "one"}]) == "one"
    parts = [{"type": "text", "text": "a "}, {"type": "image"}, {"type": "text", "text": "b"}]
    assert completion_text([{"role": "assistant", "content": parts}]) == "a b"
    tool_turns = [
        {"role": "assistant", "content": "call "},
        {"role": "tool", "content": "tool output"},
        {"role": "assistant", "content": "answer"},
    ]
    assert completion_text(tool_turns) == "call answer"


def test_junk_never_raises():
    assert completion_text(b"\xff\xfeok") == "\ufffd\ufffdok"
    assert completion_text(None) == ""
    assert completion_text(42) == ""
    assert completion_text([None, {"content": None}, {"content": [1, {"type": "text", "text": 3}]}]) == ""
