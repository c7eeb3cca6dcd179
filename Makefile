# One virtualenv (.venv) for everything; each target creates or reuses it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint clean

venv: $(STAMP)

# torch/torchvision first and pinned (never newer than 2.14.1), then the project.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job: the default sweep (search_spaces/kd.yaml: KD vs direct vs conversion on
# mnist-5k, search and final stage) on local Ray, then its report. --resume makes a second
# `make demo` continue (or just re-report) the same sweep instead of refusing its folder.
demo: $(STAMP)
	$(BIN)/harness sweep --space search_spaces/kd.yaml --resume

# The whole suite (slow tests included; GPU tests skip themselves without CUDA).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs mlflow.db mlartifacts .pytest_cache
