"""vlmrl-trl: fine-tune vision-language models for driving decisions with TRL (SFT, GRPO, PPO)."""

from .schema import ACTIONS, REASONS, Decision, ParseFailure, parse_decision, render_decision

__version__ = "0.1.0"

__all__ = ["ACTIONS", "REASONS", "Decision", "ParseFailure", "parse_decision", "render_decision"]
