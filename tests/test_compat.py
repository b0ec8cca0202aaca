"""The TRL/transformers internals we rely on are all present in the installed stack, and a missing or changed one
fails with one line naming it."""

from __future__ import annotations

import pytest

from vlmrl_trl import compat


def test_the_installed_stack_has_every_internal():
    assert all(compat.problem(internal) is None for internal in compat.INTERNALS)
    compat.check()


def test_every_overridden_grpo_method_is_listed():
    from trl import GRPOTrainer

    from vlmrl_trl.trainers import VLMGRPOTrainer, VLMPPOTrainer

    listed = {internal.name for internal in compat.INTERNALS}
    for cls in (VLMGRPOTrainer, VLMPPOTrainer):
        overridden = {
            name
            for name, value in vars(cls).items()
            if callable(value) and name.startswith("_") and not name.startswith("__")
        }
        assert {name for name in overridden if hasattr(GRPOTrainer, name)} <= listed


def test_a_missing_internal_is_named_in_one_line(monkeypatch):
    from trl import GRPOTrainer

    monkeypatch.delattr(GRPOTrainer, "_generate_single_turn")
    with pytest.raises(compat.IncompatibleVersionError) as error:
        compat.check()
    message = str(error.value)
    assert "GRPOTrainer._generate_single_turn" in message and "grpo_trainer.py:1763" in message
    assert compat.SUPPORTED in message and "\n" not in message


def test_a_changed_signature_is_named(monkeypatch):
    from trl.trainer import utils

    monkeypatch.setattr(utils, "split_tensor_dict", lambda tensor_dict, chunks: None)
    with pytest.raises(compat.IncompatibleVersionError, match="split_tensor_dict .* no longer takes num_chunks"):
        compat.check()
