# vlmrl-trl: every target installs what it needs into .venv first (once; the stamp makes it a no-op).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

# Training stages: `make sft RECIPE=recipes/<model>/sft/<config>.yaml ARGS="--key value"`; `CHECKPOINT=DIR` starts an
# RL stage from another model; `ACCELERATE_CONFIG=recipes/accelerate_configs/zero2.yaml` runs it under accelerate.
# The stages connect through the recipes: each one's output_dir is where the next one's model_name_or_path points
# (make sft and make demo write outputs/tiny-vlm-sft, the RL targets start from it). Before a stage runs,
# vlmrl_trl.stages says which model it starts from, and refuses to replace a model other recipes start from with a
# run whose ARGS change its recipe, unless OVERWRITE=1.
ARGS ?=
OVERWRITE ?=
ifdef ACCELERATE_CONFIG
RUN = $(VENV)/bin/accelerate launch --config_file $(ACCELERATE_CONFIG) -m
else
RUN = $(PY) -m
endif
FROM_CHECKPOINT = $(if $(CHECKPOINT),--model_name_or_path $(CHECKPOINT))
STAGES = $(PY) -m vlmrl_trl.stages
check_replace = @$(STAGES) replace --target $@ --recipe $(RECIPE) $(if $(OVERWRITE),--overwrite) -- $(ARGS)
# A replaced output starts afresh: resuming its old run's last checkpoint would train the old run's options.
FRESH = $(if $(OVERWRITE),--resume_from_checkpoint false)
START_FROM = $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT),$(call tiny_inputs,--trains-first))
check_start = @$(STAGES) start --target $@ --recipe $(RECIPE) $(START_FROM) -- $(ARGS)

# The tiny recipes' inputs, built offline: the synthetic clips, the tiny VLM, the CLIP fitted on the clips.
SYNTH := data/synthetic/synthetic_info.json
TINY_VLM := outputs/tiny-vlm/config.json
TINY_CLIP := outputs/tiny-clip/open_clip_config.json
TINY_SFT := outputs/tiny-vlm-sft/config.json
# Which of them a recipe needs (none for a hub model).
tiny_inputs = $(if $(findstring recipes/tiny/,$(RECIPE)),$(1))

.PHONY: install test lint format demo sft grpo-stage2 grpo-stage3 ppo-stage1

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check vlmrl_trl tests benchmarks examples
	$(PY) -m ruff format --check vlmrl_trl tests benchmarks examples

format: $(STAMP)
	$(PY) -m ruff check --fix vlmrl_trl tests benchmarks examples
	$(PY) -m ruff format vlmrl_trl tests benchmarks examples

$(SYNTH): | $(STAMP)
	$(VENV)/bin/vlmrl-trl data synth --out data/synthetic --train 2000 --val 200 --test 500

$(TINY_VLM): | $(STAMP)
	$(VENV)/bin/vlmrl-trl model tiny --out outputs/tiny-vlm

$(TINY_CLIP): | $(SYNTH)
	$(VENV)/bin/vlmrl-trl clip fit --data data/synthetic --out outputs/tiny-clip

$(TINY_SFT): | $(TINY_VLM) $(SYNTH)
	$(PY) -m vlmrl_trl.sft --config recipes/tiny/sft/config_synthetic.yaml

sft: RECIPE ?= recipes/tiny/sft/config_synthetic.yaml
sft: $(STAMP)
	$(check_replace)
	$(if $(call tiny_inputs,x),$(MAKE) $(TINY_VLM) $(SYNTH))
	$(RUN) vlmrl_trl.sft --config $(RECIPE) $(ARGS) $(FRESH)

# Stage 2's rewards (R2, R3) need no CLIP; stage 3's R1 reads the tiny one.
grpo-stage2: RECIPE ?= recipes/tiny/grpo/config_stage2.yaml
grpo-stage2: $(STAMP)
	$(check_start)
	$(check_replace)
	$(if $(call tiny_inputs,x),$(MAKE) $(if $(CHECKPOINT),,$(TINY_SFT)) $(SYNTH))
	$(RUN) vlmrl_trl.grpo --config $(RECIPE) $(FROM_CHECKPOINT) $(ARGS) $(FRESH)

grpo-stage3: RECIPE ?= recipes/tiny/grpo/config_stage3.yaml
grpo-stage3: $(STAMP)
	$(check_start)
	$(check_replace)
	$(if $(call tiny_inputs,x),$(MAKE) $(if $(CHECKPOINT),,$(TINY_SFT)) $(TINY_CLIP))
	$(RUN) vlmrl_trl.grpo --config $(RECIPE) $(FROM_CHECKPOINT) $(ARGS) $(FRESH)

ppo-stage1: RECIPE ?= recipes/tiny/ppo/config_stage1.yaml
ppo-stage1: $(STAMP)
	$(check_start)
	$(check_replace)
	$(if $(call tiny_inputs,x),$(MAKE) $(if $(CHECKPOINT),,$(TINY_SFT)) $(TINY_CLIP))
	$(RUN) vlmrl_trl.ppo --config $(RECIPE) $(FROM_CHECKPOINT) $(ARGS) $(FRESH)

# The main job on the embedded default: SFT -> predict/eval (+ report) -> GRPO Stage 2 (+ before/after page) ->
# PPO Stage 1. The models go where the stage targets read and write them (outputs/tiny-vlm-sft, ...), the
# evaluation into outputs/demo.
demo: $(STAMP) $(TINY_VLM) $(SYNTH) $(TINY_CLIP)
	$(PY) -m vlmrl_trl.demo --out outputs/demo --models outputs
