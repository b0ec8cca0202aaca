"""The TRL/transformers internals we rely on are all present in the installed stack, and a missing or changed one
fails with one line naming it."""

from __future__ import annotations

import pytest

from vlmrl_trl import compat


def test_the_installed_stack_has_every_internal():
    assert compat.problems() == []
    compat.check()


def test_every_loss_type_is_classified_by_micro_batch_dependence():
    from vlmrl_trl.trainers.grpo_trainer import MICRO_BATCH_INDEPENDENT_LOSS_TYPES

    assert MICRO_BATCH_INDEPENDENT_LOSS_TYPES < compat.CLASSIFIED_LOSS_TYPES
    assert compat.CLASSIFIED_LOSS_TYPES - MICRO_BATCH_INDEPENDENT_LOSS_TYPES == {"bnpo"}


def test_every_overridden_grpo_method_is_listed():
    from trl import GRPOTrainer

    from vlmrl_trl.trainers import VLMGRPOTrainer, VLMPPOTrainer

    listed = {internal.name for internal in compat.INTERNALS}
    ours = {
        klass
        for cls in (VLMGRPOTrainer, VLMPPOTrainer)
        for klass in cls.__mro__
        if klass.__module__.startswith("vlmrl_trl")
    }
    for klass in ours:
        overridden = {
            name
            for name, value in vars(klass).items()
            if callable(value) and name.startswith("_") and not name.startswith("__")
        }
        assert {name for name in overridden if hasattr(GRPOTrainer, name)} <= listed, klass


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


def test_a_changed_condition_we_mirror_is_named(monkeypatch):
    from trl import GRPOConfig

    def post_init(self):  # a GRPO whose group-size check reads differently
        if self.num_generations <= 1:
            raise ValueError

    monkeypatch.setattr(GRPOConfig, "__post_init__", post_init)
    with pytest.raises(compat.IncompatibleVersionError, match="GRPOConfig.__post_init__ .*num_generations < 2"):
        compat.check()


def test_a_new_loss_type_must_be_classified(monkeypatch):
    from trl import GRPOTrainer

    def _compute_loss(self, model, inputs):
        if self.loss_type == "dapo":
            return 0
        elif self.loss_type == "new_norm":
            return 1

    monkeypatch.setattr(GRPOTrainer, "_compute_loss", _compute_loss)
    with pytest.raises(compat.IncompatibleVersionError, match="not classified: new_norm"):
        compat.check()
