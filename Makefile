# SmolDrive: every target a user runs. Variables can be set on the command line, e.g.
#   make data BDDOIA_ROOT=/data/bdd-oia FRAMES=4 STRIDE=2
#   make sft ARGS="--learning_rate 5e-5 --num_train_epochs 3"
# `make demo` and `make test` work on a fresh machine: they create the virtual environment first.

PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
INSTALLED   := $(VENV)/.installed

WORK        ?= work
SEED        ?= 0
# synthetic world, written in BDD-OIA's release layout
SYNTH_ROOT  ?= $(WORK)/synth-bddoia
SYNTH_CLIPS ?= 1500
# data prep: BDDOIA_ROOT holds data/ and the six annotation files
BDDOIA_ROOT ?= $(SYNTH_ROOT)
OUT         ?= $(WORK)/dataset
FRAMES      ?= 4
STRIDE      ?= 1
IMAGE_SIZE  ?= 64
JOBS        ?= 2
# more data options (empty: the prepare script's default): a folder of clip frames or of videos per
# clip, the reason order, what to do with short clips, SKIP_BAD=1, OVERWRITE=1, and DATA_ARGS for
# anything else `python -m data_prep.prepare --help` lists
FRAMES_DIR  ?=
VIDEOS_DIR  ?=
REASON_ORDER ?=
SHORT_CLIP  ?=
SKIP_BAD    ?=
OVERWRITE   ?=
DATA_ARGS   ?=
# tiny offline stand-ins for HuggingFaceTB/SmolVLM-Instruct and an open_clip model
MODELS      ?= $(WORK)/models
# recipes: VARIANT= runs recipes/<stage>/<stage>.yaml (the real models), VARIANT=demo the _demo.yaml
VARIANT     ?=
ARGS        ?=
CLIP_ARGS   ?=
recipe       = recipes/$(1)/$(1)$(if $(VARIANT),_$(VARIANT)).yaml
# scale out: ACCELERATE=ddp|zero2|zero3|fsdp launches a stage with `accelerate launch` and
# recipes/accelerate/$(ACCELERATE).yaml on NPROC processes (default: every visible GPU); empty: one process.
ACCELERATE  ?=
NPROC       ?= $(shell $(PY) -c 'import torch; print(max(torch.cuda.device_count(), 1))')
LAUNCH       = $(if $(ACCELERATE),$(VENV)/bin/accelerate launch --config_file recipes/accelerate/$(ACCELERATE).yaml --num_processes $(NPROC),$(PY))
ifneq ($(ACCELERATE),)
ifeq ($(wildcard recipes/accelerate/$(ACCELERATE).yaml),)
$(error ACCELERATE=$(ACCELERATE): there is no recipes/accelerate/$(ACCELERATE).yaml; use ddp, zero2, zero3 or fsdp)
endif
endif
# benchmarks
BENCH_GPU_ARGS ?=
# evaluation and prediction
MODEL       ?= $(WORK)/sft
SPLIT       ?= test
EVAL_OUT    ?= $(WORK)/eval/$(notdir $(MODEL))
EVAL_ARGS   ?=
INPUT       ?=
PREDICT_OUT ?= $(WORK)/predictions.jsonl
# free (as the model says it) or constrained (only tokens the answer schema allows; evaluate/constrained.py)
DECODING    ?= free

export PYTHONUNBUFFERED=1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: help install test demo synth data audit tiny-models clip sft stage1 stage2 stage3 eval predict report decoding-record rl-record frames-study bench bench-gpu clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(INSTALLED) ## create .venv and install SmolDrive with its pinned dependencies

test: $(INSTALLED) ## run the test suite
	$(PY) -m pytest -q

synth: $(INSTALLED) ## write the synthetic world as a BDD-OIA release (SYNTH_ROOT SYNTH_CLIPS SEED)
	@if [ -f $(SYNTH_ROOT)/truth.json ]; then echo "$(SYNTH_ROOT) exists: reusing it (make clean, or SYNTH_ROOT=..., for a new one)"; \
	else $(PY) -m data_prep.synth --out $(SYNTH_ROOT) --clips $(SYNTH_CLIPS) --seed $(SEED) --num-proc $(JOBS); fi

data: $(INSTALLED) ## prepare a dataset from a BDD-OIA release (BDDOIA_ROOT OUT FRAMES STRIDE IMAGE_SIZE JOBS FRAMES_DIR VIDEOS_DIR REASON_ORDER SHORT_CLIP SKIP_BAD OVERWRITE DATA_ARGS)
	$(PY) -m data_prep.prepare --root $(BDDOIA_ROOT) --out $(OUT) --frames $(FRAMES) --stride $(STRIDE) \
		--image-size $(IMAGE_SIZE) --num-proc $(JOBS) $(if $(FRAMES_DIR),--frames-dir $(FRAMES_DIR)) \
		$(if $(VIDEOS_DIR),--videos-dir $(VIDEOS_DIR)) $(if $(REASON_ORDER),--reason-order $(REASON_ORDER)) \
		$(if $(SHORT_CLIP),--short-clip $(SHORT_CLIP)) $(if $(SKIP_BAD),--skip-bad) $(if $(OVERWRITE),--overwrite) $(DATA_ARGS)

audit: $(INSTALLED) ## which reason order fits an annotation set (BDDOIA_ROOT)
	$(PY) -m data_prep.audit --root $(BDDOIA_ROOT)

tiny-models: $(INSTALLED) ## build the tiny SmolVLM-shaped model and tiny open_clip offline (MODELS)
	$(PY) -m tiny_models.build --out $(MODELS) --seed $(SEED) \
		$(if $(wildcard $(SYNTH_ROOT)/descriptions.json),--corpus $(SYNTH_ROOT)/descriptions.json)

clip: $(INSTALLED) ## train the tiny CLIP contrastively on the synthetic train split (stage 1's reward model in the demo)
	$(PY) -m tiny_models.train_clip --dataset $(OUT) --clip local-dir:$(MODELS)/tiny-clip --out $(MODELS)/tiny-clip-trained --seed $(SEED) $(CLIP_ARGS)

sft: $(INSTALLED) ## supervised warm start (VARIANT=demo for the tiny model; ARGS="--key value")
	$(LAUNCH) -m recipes.sft.sft --config $(call recipe,sft) $(ARGS)

stage1: $(INSTALLED) ## RL stage 1: scene description, CLIP reward, actor-critic (from sft)
	$(LAUNCH) -m recipes.stage1.stage1 --config $(call recipe,stage1) $(ARGS)

stage2: $(INSTALLED) ## RL stage 2: actions and justification, R2 (from stage1)
	$(LAUNCH) -m recipes.stage2.stage2 --config $(call recipe,stage2) $(ARGS)

stage3: $(INSTALLED) ## RL stage 3: the full JSON, R3 (from stage2)
	$(LAUNCH) -m recipes.stage3.stage3 --config $(call recipe,stage3) $(ARGS)

eval: $(INSTALLED) ## evaluate MODEL on SPLIT of OUT: metrics, report, plots, gallery (EVAL_OUT EVAL_ARGS DECODING)
	$(PY) -m evaluate.run --model $(MODEL) --dataset $(OUT) --split $(SPLIT) --out $(EVAL_OUT) --decoding $(DECODING) $(EVAL_ARGS)

predict: $(INSTALLED) ## run MODEL over a video or frame folder INPUT, one JSON per window (PREDICT_OUT DECODING)
	@test -n "$(INPUT)" || (echo "usage: make predict MODEL=<model folder> INPUT=<video or frame folder>"; exit 2)
	$(PY) -m evaluate.predict --model $(MODEL) --input $(INPUT) --frames $(FRAMES) --stride $(STRIDE) --decoding $(DECODING) --out $(PREDICT_OUT)

DEMO_EVAL   ?= --max-samples 200 --clip-model local-dir:$(MODELS)/tiny-clip-trained
DEMO_STAGES ?= sft stage1 stage2 stage3
# The demo YAMLs name work/; these overrides put every stage's input and output under WORK instead.
DEMO_FROM_sft      = $(MODELS)/tiny-smolvlm
DEMO_FROM_stage1   = $(WORK)/sft
DEMO_FROM_stage2   = $(WORK)/stage1
DEMO_FROM_stage3   = $(WORK)/stage2
DEMO_REWARD_stage1 = --reward_params '{"clip_alignment": {"model_name": "local-dir:$(MODELS)/tiny-clip-trained", "pretrained": null}}'
demo_paths         = --model_name_or_path $(DEMO_FROM_$(1)) --dataset_path $(OUT) --output_dir $(WORK)/$(1) $(DEMO_REWARD_$(1))

demo: ## the main job on the embedded default: synthetic world -> dataset -> tiny models -> training chain -> eval table
	$(MAKE) synth
	$(MAKE) data BDDOIA_ROOT=$(SYNTH_ROOT)
	$(MAKE) tiny-models
	$(MAKE) clip
	$(MAKE) eval MODEL=$(MODELS)/tiny-smolvlm EVAL_OUT=$(WORK)/eval/untrained EVAL_ARGS="$(DEMO_EVAL) --label untrained"
	$(foreach s,$(DEMO_STAGES),$(LAUNCH) -m recipes.$(s).$(s) --config recipes/$(s)/$(s)_demo.yaml $(call demo_paths,$(s)) $(ARGS) && \
		$(PY) -m evaluate.run --model $(WORK)/$(s) --dataset $(OUT) --split $(SPLIT) --out $(WORK)/eval/$(s) $(DEMO_EVAL) --label $(s) && ) true
	$(MAKE) report RUNS="untrained=$(WORK)/eval/untrained $(foreach s,$(DEMO_STAGES),$(s)=$(WORK)/eval/$(s))" \
		LOGS="$(foreach s,$(DEMO_STAGES),$(s)=$(WORK)/$(s))"
	@cat $(WORK)/eval/report/report.md

RUNS        ?= $(foreach d,$(wildcard $(WORK)/eval/*/metrics.json),$(notdir $(patsubst %/,%,$(dir $(d))))=$(dir $(d)))
LOGS        ?=
report: $(INSTALLED) ## one table (and training curves) over several evaluations (RUNS="label=dir ...", LOGS="label=run_dir ...")
	$(PY) -m evaluate.run --compare $(RUNS) --out $(WORK)/eval/report $(if $(LOGS),--logs $(LOGS))

# free against grammar-constrained decoding for each model in DECODING_MODELS (folders under WORK), on
# SPLIT with the demo's evaluation options; one row per model and mode in DECODING_RECORD. An
# evaluation is redone only when its model folder is newer than it.
DECODING_MODELS ?= sft stage3
DECODING_EVAL   ?= $(WORK)/eval/decoding
DECODING_RECORD ?= records/constrained_decoding.md
DECODING_RUNS    = $(foreach m,$(DECODING_MODELS),$(foreach d,free constrained,$(m)-$(d)))
decoding_eval    = $(PY) -m evaluate.run --model $(WORK)/$(1) --dataset $(OUT) --split $(SPLIT) \
	--out $(DECODING_EVAL)/$(1)-$(2) $(DEMO_EVAL) --label $(1) --decoding $(2)
$(DECODING_EVAL)/%-free/metrics.json: $(WORK)/% | $(INSTALLED)
	$(call decoding_eval,$*,free)
$(DECODING_EVAL)/%-constrained/metrics.json: $(WORK)/% | $(INSTALLED)
	$(call decoding_eval,$*,constrained)
# a model folder the record needs but nobody trained: say what makes it (make -n still dry-runs)
$(addprefix $(WORK)/,$(DECODING_MODELS)):
	@echo "error: $@ is missing: train it first (make demo trains sft and stage3 under WORK), or set DECODING_MODELS" >&2; exit 2
decoding-record: $(INSTALLED) $(foreach r,$(DECODING_RUNS),$(DECODING_EVAL)/$(r)/metrics.json) ## free vs constrained decoding of DECODING_MODELS on SPLIT: one row per model and mode (DECODING_RECORD)
	$(PY) -m evaluate.decoding_record --out $(DECODING_RECORD) --runs $(foreach r,$(DECODING_RUNS),$(r)=$(DECODING_EVAL)/$(r)) \
		--command "make decoding-record DECODING_MODELS='$(DECODING_MODELS)' WORK=$(WORK) MODELS=$(MODELS) OUT=$(OUT) SPLIT=$(SPLIT) DECODING_EVAL=$(DECODING_EVAL)"

SEEDS       ?= 0 1 2
RECORD      ?= records/rl_record.md
# The record also scores every model on a held-out world: HOLDOUT_CLIPS clips of another world seed,
# all in its val split, that no model trains on (the demo's val has 150 clips, too few to tell RL's
# effects from the seeds'). HOLDOUT= (empty) leaves it out.
HOLDOUT_CLIPS ?= 1000
HOLDOUT_SEED  ?= 1001
HOLDOUT_ROOT  ?= $(WORK)/holdout-bddoia
HOLDOUT       ?= $(WORK)/holdout-dataset
rl-record: $(INSTALLED) ## the RL learning record over SEEDS: the demo chain, stage 1 by GRPO, each RL stage under the null reward, an SFT control; val and a held-out world, greedy (RECORD HOLDOUT)
	@test -f $(OUT)/dataset_dict.json || $(MAKE) synth data
	@test -d $(MODELS)/tiny-clip-trained || ($(MAKE) tiny-models && $(MAKE) clip)
ifneq ($(HOLDOUT),)
	@test -f $(HOLDOUT_ROOT)/truth.json || $(PY) -m data_prep.synth --out $(HOLDOUT_ROOT) --clips $(HOLDOUT_CLIPS) \
		--seed $(HOLDOUT_SEED) --num-proc $(JOBS) --train-fraction 0 --val-fraction 1
	@test -f $(HOLDOUT)/dataset_dict.json || $(MAKE) data BDDOIA_ROOT=$(HOLDOUT_ROOT) OUT=$(HOLDOUT)
endif
	$(PY) -m evaluate.record --seeds $(SEEDS) --work $(WORK)/record --dataset $(OUT) \
		--clip-model local-dir:$(MODELS)/tiny-clip-trained --out $(RECORD) $(if $(HOLDOUT),--holdout $(HOLDOUT))

# How many frames: SFT at demo size for every M in FRAMES_LIST (and each stride in STRIDES), val.
# STRIDE_FRAMES: the M values that also run at the other strides. Empty STUDY_ROOT: on two synthetic worlds (default, and --temporal where some causes show only
# across frames), each with STUDY_WORLD_FRAMES frames per clip, from one tiny model built on the
# temporal world's descriptions. STUDY_ROOT=<a BDD-OIA release> (with STUDY_MODEL, and FRAMES_DIR or
# VIDEOS_DIR for its clip frames): the study on it alone, into STUDY_RECORD.
FRAMES_LIST  ?= 1 2 4 8
STRIDES      ?= 1 2
STRIDE_FRAMES ?= 2
STUDY_SEEDS  ?= 0 1
STUDY_WORK   ?= $(WORK)/frames-study
STUDY_CLIPS  ?= 800
STUDY_WORLD_FRAMES ?= 16
STUDY_WORLD_ARGS ?= --frames $(STUDY_WORLD_FRAMES) --val-fraction 0.2
STUDY_ROOT   ?=
STUDY_MODEL  ?= $(STUDY_WORK)/models/tiny-smolvlm
STUDY_RECORD ?= records/frames_study.md
# the study's size (sized to fit about 40 minutes for both worlds on 2 shared cores): val clips
# scored, then the SFT demo recipe's overrides; STUDY_THREADS torch threads per process (on a
# shared machine two threads per process waited on each other: 2.9 s per step against 0.5 s)
STUDY_ARGS   ?= --max-eval-samples 96 -- --eval_strategy no
STUDY_THREADS ?= 1
# the synthetic worlds' sizing, for their records
STUDY_NOTE   ?= Sized so both worlds fit about 40 minutes on 2 CPU cores shared with other work: 800-clip worlds of $(STUDY_WORLD_FRAMES) frames (560 train, 160 val), the demo recipe unchanged but for its per-epoch val loss, one torch thread per process.
study        = OMP_NUM_THREADS=$(STUDY_THREADS) $(PY) -m evaluate.frames_study --frames $(FRAMES_LIST) --strides $(STRIDES) \
		--stride-frames $(STRIDE_FRAMES) --seeds $(STUDY_SEEDS) \
		--model $(STUDY_MODEL) --root $(1) --work $(STUDY_WORK)/$(2) --out $(3) --title "$(4)" \
		--sizing "$(5)" $(if $(FRAMES_DIR),--frames-dir $(FRAMES_DIR)) $(if $(VIDEOS_DIR),--videos-dir $(VIDEOS_DIR)) \
		$(STUDY_ARGS)
frames-study: $(INSTALLED) ## SFT for each M in FRAMES_LIST and stride in STRIDES over STUDY_SEEDS, val F1 table and plot (STUDY_ROOT: a real release; empty: both synthetic worlds)
ifeq ($(STUDY_ROOT),)
	@test -f $(STUDY_WORK)/world-default/truth.json || $(PY) -m data_prep.synth --out $(STUDY_WORK)/world-default \
		--clips $(STUDY_CLIPS) --seed $(SEED) --num-proc $(JOBS) $(STUDY_WORLD_ARGS)
	@test -f $(STUDY_WORK)/world-temporal/truth.json || $(PY) -m data_prep.synth --out $(STUDY_WORK)/world-temporal \
		--clips $(STUDY_CLIPS) --seed $(SEED) --num-proc $(JOBS) $(STUDY_WORLD_ARGS) --temporal
	@test -d $(STUDY_MODEL) || $(PY) -m tiny_models.build --out $(dir $(STUDY_MODEL)) --seed $(SEED) \
		--corpus $(STUDY_WORK)/world-temporal/descriptions.json
	$(call study,$(STUDY_WORK)/world-temporal,temporal,records/frames_study_temporal.md,How many frames: the temporal synthetic world,$(STUDY_NOTE))
	$(call study,$(STUDY_WORK)/world-default,default,records/frames_study.md,How many frames: the default synthetic world,$(STUDY_NOTE))
else
	$(call study,$(STUDY_ROOT),$(notdir $(STUDY_ROOT)),$(STUDY_RECORD),How many frames: $(STUDY_ROOT))
endif

bench: $(INSTALLED) ## CPU benchmarks; figures go to BENCHMARKS.md
	$(PY) -m benchmarks.data_prep
	$(PY) -m benchmarks.data_prep --frame-size 1280x720
	$(PY) -m benchmarks.rl_step
	$(PY) -m benchmarks.rewards
	$(PY) -m benchmarks.constrained

bench-gpu: $(INSTALLED) ## GPU benchmark: SFT (full/LoRA/QLoRA) and RL steps on the SmolVLM sizes into BENCHMARKS.md; CPU fallback without CUDA (BENCH_GPU_ARGS)
	$(PY) -m benchmarks.gpu $(BENCH_GPU_ARGS)

clean: ## remove everything runs produced (keeps .venv)
	rm -rf $(WORK)
