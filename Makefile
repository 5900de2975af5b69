# `make test` and `make demo` each set up .venv on a fresh machine (python3 -m venv + pip install
# of the project with its test extras) when it is missing or pyproject.toml is newer.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check bench tests benchmarks
	$(BIN)/python -m pytest -q

# The demo sweep writes to results/demo/<sweep_id>/ (--resume: a rerun continues or returns at
# once), then the report of that sweep goes to reports/demo/.
DEMO_SPACE := search_spaces/demo.yaml
demo: $(STAMP)
	$(BIN)/bench sweep $(DEMO_SPACE) --storage results/demo --resume
	$(BIN)/bench results results/demo --sweep-id $$($(BIN)/bench sweep $(DEMO_SPACE) --print-id)
	$(BIN)/bench report results/demo --sweep-id $$($(BIN)/bench sweep $(DEMO_SPACE) --print-id) --out reports/demo

lint: $(STAMP)
	$(BIN)/ruff check bench tests benchmarks
	$(BIN)/ruff format --check bench tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
