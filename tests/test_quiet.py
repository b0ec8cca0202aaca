"""Startup noise a user cannot act on is dropped; every other warning still shows."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

import pytest

from vlmrl_trl import quiet


@pytest.fixture(autouse=True)
def _installed(monkeypatch):
    monkeypatch.delenv("VLMRL_VERBOSE", raising=False)
    with warnings.catch_warnings():
        quiet.quiet_startup()
        yield


def _logged(caplog, name: str, message: str) -> bool:
    caplog.clear()
    logger = logging.getLogger(name)
    with caplog.at_level(logging.WARNING):
        logger.propagate, old = True, logger.propagate
        try:
            logger.warning(message)
        finally:
            logger.propagate = old
    return message in caplog.text


def test_known_log_noise_is_dropped_and_other_messages_kept(caplog, monkeypatch):
    monkeypatch.setattr(quiet, "_gpu_present", lambda: False)
    for name, start, _ in quiet.LOG_NOISE:
        assert not _logged(caplog, name, start + " (details)"), name
        assert _logged(caplog, name, "something else went wrong"), name
    # accelerate's mismatch is noise only in the shape transformers' Trainer causes (plugin 1)
    assert _logged(
        caplog, "accelerate.accelerator", "Gradient accumulation steps mismatch: GradientAccumulationPlugin has 4,"
    )


def test_deepspeed_cpu_notice_stays_where_there_is_a_gpu(caplog, monkeypatch):
    monkeypatch.setattr(quiet, "_gpu_present", lambda: True)
    name, start, _ = next(entry for entry in quiet.LOG_NOISE if entry[0] == "DeepSpeed")
    assert _logged(caplog, name, start + ".")


def test_known_warnings_are_ignored_and_others_shown():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet.quiet_startup()  # after simplefilter, as at startup: the filters go in front
        for category, start, _ in quiet.WARNING_NOISE:
            warnings.warn(start + " (details)", category, stacklevel=1)
        warnings.warn("'pin_memory' is fine but this is new", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["'pin_memory' is fine but this is new"]


def test_a_stage_script_starts_without_the_bitsandbytes_notice():
    """Importing a stage script (which imports TRL and bitsandbytes) prints nothing."""
    done = subprocess.run([sys.executable, "-c", "import vlmrl_trl.sft"], capture_output=True, text=True, check=True)
    assert "gemm_4bit_forward" not in done.stderr + done.stdout
