# `make test` and `make demo` each set up .venv on a fresh machine (python3 -m venv + pip install
# of the project with its test extras) when it is missing or pyproject.toml is newer.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo reproduce lint venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# The contract (docs/ARCHITECTURE.md): lint, layout, the import rules and types (`make lint`),
# then the tests.
test: lint
	$(BIN)/python -m pytest -q

# The demo sweep writes to results/demo/<sweep_id>/ (--resume: a rerun continues or returns at
# once), then the report of that sweep goes to reports/demo/.
DEMO_SPACE := search_spaces/demo.yaml
demo: $(STAMP)
	$(BIN)/bench sweep $(DEMO_SPACE) --storage results/demo --resume
	$(BIN)/bench results results/demo --sweep-id $$($(BIN)/bench sweep $(DEMO_SPACE) --print-id)
	$(BIN)/bench report results/demo --sweep-id $$($(BIN)/bench sweep $(DEMO_SPACE) --print-id) --out reports/demo

# The harness's verdict on CLOA's over-fusion claim (reports/FINDINGS.md): four sweeps on the
# embedded local Ray, each resumable, then one report per sweep in reports/<space>/. Not part of
# `make test` or CI: about an hour on 2 CPU cores. Metric: the FFN probe (CLOA's fine-tuning) on
# synthetic data; kNN where digits is in the sweep, whose 10% labelled set (~130 images) the FFN
# probe's 20 epochs at batch 32 (80 steps) under-train (reports/FINDINGS.md).
REPRODUCE_SPACES := cloa_collapse_synthetic cloa_collapse_digits cloa_collapse_ablations cloa_collapse_temperature cloa_collapse_weight clop_collapse
reproduce: $(STAMP)
	set -e; for space in $(REPRODUCE_SPACES); do \
	  yaml=search_spaces/$$space.yaml; \
	  $(BIN)/bench sweep $$yaml --storage results/reproduce --resume; \
	  id=$$($(BIN)/bench sweep $$yaml --print-id); \
	  case $$space in *digits*|clop_collapse) metric=m_knn_top1;; *) metric=m_ffn_top1;; esac; \
	  $(BIN)/bench report results/reproduce --sweep-id $$id --metric $$metric --out reports/$$space; \
	done

lint: $(STAMP)
	$(BIN)/ruff check bench tests benchmarks
	$(BIN)/ruff format --check bench
	$(BIN)/lint-imports
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .import_linter_cache
