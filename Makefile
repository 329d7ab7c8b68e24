# Two commands matter: `make demo` and `make test`. Both create .venv if it is missing.
PYTHON ?= python3.11
VENV ?= .venv
# CPU wheel by default; cluster users override, e.g. TORCH_SPEC="torch==2.13.0" TORCH_INDEX=--index-url=https://download.pytorch.org/whl/cu128
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
# the FID path (evaluation.feature inception) and torch-fidelity's requirements but torchvision;
# installed with --no-deps, see $(STAMP)
FIDELITY_SPEC ?= torch-fidelity==0.4.0 tqdm==4.70.1
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-all lint bench clean

# torch-fidelity (the FID path, which the tests run) with --no-deps: its torchvision requirement
# would replace the pinned torch (pyproject.toml says why there is no inception extra)
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	$(BIN)/python -m pip install -q --no-deps $(FIDELITY_SPEC)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/varscale demo studies/smoke.yaml

# lint and format first: a red ruff fails the suite, as in CI
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

clean:
	rm -rf $(VENV) .pytest_cache
