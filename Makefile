# SmolDrive: every target a user runs. Variables can be set on the command line (make data FRAMES=2).
# `make demo` and `make test` work on a fresh machine: they create the virtual environment first.

PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
INSTALLED   := $(VENV)/.installed

WORK        ?= work
SEED        ?= 0
# synthetic world (a BDD-OIA release layout)
SYNTH_ROOT  ?= $(WORK)/synth-bddoia
SYNTH_CLIPS ?= 1200
# data prep: BDDOIA_ROOT is a folder holding data/ and the six annotation files
BDDOIA_ROOT ?= $(SYNTH_ROOT)
OUT         ?= $(WORK)/dataset
FRAMES      ?= 4
STRIDE      ?= 1
IMAGE_SIZE  ?= 64
JOBS        ?= 2
# tiny offline models (stand-ins for HuggingFaceTB/SmolVLM-Instruct and an open_clip model)
MODELS      ?= $(WORK)/models

export PYTHONUNBUFFERED=1
export WANDB_MODE ?= offline
export HF_HUB_OFFLINE ?= 1

.PHONY: help install test demo synth data tiny-models audit bench clean

help:
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(INSTALLED) ## create .venv and install SmolDrive with pinned dependencies

test: $(INSTALLED) ## run the test suite
	$(PY) -m pytest -q

synth: $(INSTALLED) ## write the synthetic world as a BDD-OIA release (SYNTH_ROOT, SYNTH_CLIPS, SEED)
	$(PY) -m data_prep.synth --out $(SYNTH_ROOT) --clips $(SYNTH_CLIPS) --seed $(SEED)

data: $(INSTALLED) ## prepare a dataset from a BDD-OIA release (BDDOIA_ROOT, OUT, FRAMES, STRIDE, IMAGE_SIZE)
	$(PY) -m data_prep.prepare --root $(BDDOIA_ROOT) --out $(OUT) --frames $(FRAMES) --stride $(STRIDE) \
		--image-size $(IMAGE_SIZE) --num-proc $(JOBS)

audit: $(INSTALLED) ## check which reason order fits an annotation set (BDDOIA_ROOT)
	$(PY) -m data_prep.audit --root $(BDDOIA_ROOT)

tiny-models: $(INSTALLED) ## build the tiny offline SmolVLM-shaped model and tiny open_clip (MODELS)
	$(PY) -m tiny_models.build --out $(MODELS) --seed $(SEED)

demo: ## the main job on the embedded default: synthetic world -> dataset -> tiny models
	$(MAKE) synth
	$(MAKE) data BDDOIA_ROOT=$(SYNTH_ROOT)
	$(MAKE) tiny-models

bench: $(INSTALLED) ## CPU benchmarks; figures go to BENCHMARKS.md
	$(PY) -m benchmarks.data_prep

clean: ## remove everything runs produced (keeps .venv)
	rm -rf $(WORK)
