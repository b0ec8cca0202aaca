"""VLMPPOTrainer on the tiny random Idefics3 model (fp32, CPU) with the untrained tiny CLIP as R1."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from datasets import Dataset
from safetensors import safe_open
from safetensors.torch import load_file

from vlmrl_trl.data import build_prompt
from vlmrl_trl.models import load_processor
from vlmrl_trl.rewards import ActionReasoningReward, ClipAlignmentReward
from vlmrl_trl.trainers.ppo_config import VLMPPOConfig
from vlmrl_trl.trainers.ppo_trainer import VLMPPOTrainer
from vlmrl_trl.trainers.value_head import VALUE_HEAD_FILE, ValueHead


@pytest.fixture(scope="module")
def clips(random_frame) -> Dataset:
    """Four frames-only RL rows of two 32x32 frames each (the `to_rl_dataset` layout)."""
    return Dataset.from_list(
        [
            {"prompt": build_prompt(2, "frames_only"), "images": [random_frame(10 * row + i) for i in range(2)]}
            for row in range(4)
        ]
    )


@pytest.fixture(scope="module")
def r1(tiny_clip) -> ClipAlignmentReward:
    return ClipAlignmentReward(encoder=tiny_clip)


@pytest.fixture
def make_trainer(tiny_vlm_dir, load_tiny_model, clips, r1, cpu_args, tmp_path):
    """``make_trainer(**config)``: a VLMPPOTrainer on the tiny VLM (or ``model=``), dense R1, 2 rows per step."""

    def make(model=None, peft_config=None, reward_funcs=None, **overrides) -> VLMPPOTrainer:
        config = {
            **cpu_args,
            "output_dir": str(tmp_path / "out"),
            "per_device_train_batch_size": 2,
            "max_completion_length": 6,
            "max_steps": 1,
            "learning_rate": 1e-3,
            "logging_steps": 1,
            "save_strategy": "no",
            "activation_checkpointing": False,
            "dense_clip_reward": True,
            "dense_reward_every_k": 2,
            "seed": 0,
            **overrides,
        }
        if model is None:
            model = load_tiny_model()
        return VLMPPOTrainer(
            model,
            reward_funcs=[r1] if reward_funcs is None else reward_funcs,
            args=VLMPPOConfig(**config),
            train_dataset=clips,
            processing_class=load_processor(str(tiny_vlm_dir)),
            peft_config=peft_config,
        )

    return make


def rollout(trainer: VLMPPOTrainer, clips: Dataset) -> dict:
    trainer.model.train()
    return trainer._generate_and_score_completions([clips[i] for i in range(len(clips))])


def head_state(trainer: VLMPPOTrainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer._value_head.state_dict().items()}


def policy_state(trainer: VLMPPOTrainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.named_parameters() if "value_head." not in k}


def test_rollout_gives_per_token_advantages_that_telescope_to_the_final_r1(make_trainer, clips):
    # gamma = lambda = 1, a fresh critic (V = 0) and no whitening: A_t is the reward-to-go, so A_0 = R1(T_N) - R1(T_0).
    trainer = make_trainer(gamma=1.0, lam=1.0, whiten_advantages=False)
    batch = rollout(trainer, clips)
    mask = batch["completion_mask"].bool()
    assert batch["advantages"].shape == batch["old_values"].shape == batch["returns"].shape == mask.shape
    assert batch["old_values"].eq(0).all(), "a fresh value head predicts 0"
    texts = trainer._tokenizer.batch_decode(batch["completion_ids"], skip_special_tokens=True)
    final_r1 = torch.tensor(trainer.reward_funcs[0].score(clips["images"], texts))
    torch.testing.assert_close(batch["advantages"][:, 0], final_r1 - trainer.reward_funcs[0].floor)
    torch.testing.assert_close(batch["returns"], batch["advantages"])
    assert batch["advantages"][~mask].eq(0).all()


@pytest.mark.parametrize("num_iterations", [1, 2])
def test_a_rollout_runs_one_policy_pass_for_old_log_probs_and_values(make_trainer, clips, num_iterations):
    # With num_iterations=2 GRPO runs its own old-policy pass, which then also feeds the critic.
    trainer = make_trainer(num_iterations=num_iterations)
    passes = []
    policy_pass = trainer._get_per_token_logps_and_entropies

    def counting_pass(*args, **kwargs):
        passes.append(1)
        return policy_pass(*args, **kwargs)

    trainer._get_per_token_logps_and_entropies = counting_pass
    batch = rollout(trainer, clips)
    assert len(passes) == 1
    assert ("old_per_token_logps" in batch) == (num_iterations == 2)
    assert batch["old_values"].shape == batch["completion_ids"].shape


def test_advantages_are_whitened_over_the_completion_tokens(make_trainer, clips):
    batch = rollout(make_trainer(), clips)
    valid = batch["advantages"][batch["completion_mask"].bool()]
    torch.testing.assert_close(valid.mean(), torch.tensor(0.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(valid.std(), torch.tensor(1.0), atol=1e-3, rtol=0)


@pytest.mark.parametrize("critic_only", [True, False])
def test_value_loss_falls_on_a_fixed_batch(make_trainer, clips, critic_only):
    trainer = make_trainer(critic_warmup_steps=100 if critic_only else 0, learning_rate=3e-3, cliprange_value=None)
    batch = rollout(trainer, clips)
    before = policy_state(trainer)
    optimizer = trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1
    losses = []
    for _ in range(40):
        trainer.compute_loss(trainer.model, batch).backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(trainer._metrics["train"]["value/loss"][-1])
    assert sum(losses[-5:]) / 5 < 0.35 * losses[0], losses
    after = policy_state(trainer)
    if critic_only:  # the warm-up trains the head only: the policy does not move
        assert all(torch.equal(before[k], after[k]) for k in before)
    else:  # the value loss and the policy loss reach the shared body
        assert any(not torch.equal(before[k], after[k]) for k in before)


def test_training_logs_the_critic_and_each_reward_component(make_trainer):
    trainer = make_trainer(max_steps=2, critic_warmup_steps=1)
    trainer.train()
    logs = trainer.state.log_history[0]
    for key in (
        "value/loss",
        "value/clip_frac",
        "value/explained_variance",
        "value/mean",
        "returns/mean",
        "advantages/mean",
        "rewards/clip_alignment/mean",
        "rewards/dense_clip/mean",
        "rewards/terminal/mean",
    ):
        assert key in logs, key
    assert [h["critic_warmup"] for h in trainer.state.log_history[:2]] == [1.0, 0.0]


def test_checkpoints_hold_the_value_head_bit_for_bit_and_resume_restores_it(make_trainer, tmp_path):
    trainer = make_trainer(max_steps=2, save_strategy="steps", save_steps=2)
    trainer.train()
    checkpoint = tmp_path / "out" / "checkpoint-2"
    saved = load_file(str(checkpoint / VALUE_HEAD_FILE))
    trained = head_state(trainer)
    assert trained["mlp.2.weight"].abs().sum() > 0, "the head trained"
    assert saved.keys() == trained.keys() and all(torch.equal(saved[k], trained[k]) for k in saved)
    with safe_open(str(checkpoint / "model.safetensors"), "pt") as f:
        assert not [key for key in f.keys() if "value_head" in key], "the head stays out of the model's weights"

    resumed = make_trainer(max_steps=2, output_dir=str(tmp_path / "resumed"))
    assert not torch.equal(head_state(resumed)["mlp.2.weight"], trained["mlp.2.weight"])
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert all(torch.equal(v, trained[k]) for k, v in head_state(resumed).items())

    # A checkpoint (or any model directory holding value_head.safetensors) starts a new run with its critic.
    loaded = make_trainer(model=str(checkpoint), output_dir=str(tmp_path / "next"))
    assert all(torch.equal(v, trained[k]) for k, v in head_state(loaded).items())
    assert all(torch.equal(v, trained[k]) for k, v in ValueHead.from_pretrained(checkpoint).state_dict().items())


def test_save_model_writes_the_head_beside_the_model(make_trainer, tmp_path):
    trainer = make_trainer()
    trainer.save_model(str(tmp_path / "final"))
    assert (tmp_path / "final" / VALUE_HEAD_FILE).is_file() and (tmp_path / "final" / "config.json").is_file()


def test_a_saved_head_is_restored_and_size_options_it_overrides_are_named(make_trainer, tmp_path, caplog):
    trainer = make_trainer()
    with torch.no_grad():
        trainer._value_head.mlp[-1].weight.fill_(0.5)  # unlike any fresh head, whose output layer starts at 0
    trainer.save_model(str(tmp_path / "final"))
    saved = head_state(trainer)
    with caplog.at_level("WARNING"):
        restored = make_trainer(value_head_path=str(tmp_path / "final"), value_head_num_layers=3)
    assert all(torch.equal(saved[k], v) for k, v in head_state(restored).items())
    assert "has width" in caplog.text and "apply to fresh heads only" in caplog.text


def test_lora_keeps_the_value_head_trainable_and_saves_it_with_the_adapter(make_trainer, tmp_path):
    from peft import LoraConfig

    trainer = make_trainer(
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
        save_strategy="steps",
        save_steps=1,
    )
    head_params = list(trainer._value_head.parameters())
    assert all(p.requires_grad for p in head_params)
    before_head, before_policy = head_state(trainer), policy_state(trainer)
    trainer.train()
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in optimized for p in head_params)
    assert not torch.equal(head_state(trainer)["mlp.2.weight"], before_head["mlp.2.weight"])
    after_policy = policy_state(trainer)
    frozen = [k for k in before_policy if "lora_" not in k]
    assert frozen and all(torch.equal(before_policy[k], after_policy[k]) for k in frozen)
    checkpoint = Path(trainer.args.output_dir) / "checkpoint-1"
    assert (checkpoint / "adapter_model.safetensors").is_file() and (checkpoint / VALUE_HEAD_FILE).is_file()


def test_dense_clip_reward_needs_the_clip_reward(make_trainer):
    with pytest.raises(ValueError, match="dense_clip_reward=True needs the clip_alignment reward"):
        make_trainer(reward_funcs=[ActionReasoningReward()])


def one(prompts, completions, **columns):
    return [1.0] * len(completions)


class TokenCount:
    """A user reward following the `DenseReward` protocol: 0.1 per completion token, paid on each token."""

    __name__ = "token_count"

    def __call__(self, prompts, completions, completion_ids=None, **columns):
        return [0.1 * len(ids) for ids in completion_ids]

    def per_token_rewards(self, inputs, completion_ids, tokenizer, *, every_k=1):
        return [[0.1] * len(ids) for ids in completion_ids]


def test_any_reward_with_per_token_rewards_is_paid_per_token(make_trainer, clips):
    trainer = make_trainer(reward_funcs=[one, TokenCount()], gamma=1.0, lam=1.0)
    trainer.args.whiten_advantages = False
    assert trainer._dense_reward_index == 1
    batch = rollout(trainer, clips)
    lengths = batch["completion_mask"].sum(1).to(batch["advantages"].dtype)
    # A fresh critic (V = 0), gamma = lambda = 1: A_0 is the reward-to-go, 1 at the end + 0.1 per token.
    torch.testing.assert_close(batch["advantages"][:, 0], 1.0 + 0.1 * lengths)


def test_kl_penalty_goes_into_the_rewards(make_trainer, clips):
    trainer = make_trainer(beta=0.1, kl_in_reward=True)
    batch = rollout(trainer, clips)
    assert "ref_per_token_logps" in batch
    assert "kl" in trainer._metrics["train"] and "rewards/kl_penalty/mean" in trainer._metrics["train"]
    trainer.current_gradient_accumulation_steps = 1
    trainer.compute_loss(trainer.model, batch)
    assert trainer.beta == 0.1, "the coefficient is restored after the loss"


@pytest.mark.parametrize(("num_generations", "grouped"), [(1, True), (2, False)])
def test_clips_are_grouped_into_micro_batches_only_where_the_value_loss_allows(make_trainer, num_generations, grouped):
    """The value loss is a token mean per micro-batch: grouping by clip may only keep TRL's gradient with one
    completion per clip (where it is TRL's row shuffle itself)."""
    trainer = make_trainer(num_generations=num_generations, per_device_train_batch_size=2)
    assert trainer.group_clips is grouped


def test_a_foreign_optimizer_without_the_head_is_rejected(tiny_vlm_dir, load_tiny_model, clips, r1, cpu_args):
    model = load_tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    args = VLMPPOConfig(**cpu_args)
    with pytest.raises(ValueError, match="does not hold the value head"):
        VLMPPOTrainer(
            model,
            reward_funcs=[r1],
            args=args,
            train_dataset=clips,
            processing_class=load_processor(str(tiny_vlm_dir)),
            optimizers=(optimizer, None),
        )
