# Every target builds its own .venv from the project's files: nothing to install by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean sysdeps soak bytecode

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The project's own modules compiled once into __pycache__: machines that set
# PYTHONDONTWRITEBYTECODE (this machine class does) otherwise compile all 150 of them again
# in every `bedside` process, about 0.35 s each (compileall skips files already up to date).
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q workflow tests bench >/dev/null

# Debian packages (poppler for page checks, fonts for records, ...), installed only if missing.
sysdeps:
	bash scripts/sysdeps.sh

demo: $(STAMP) sysdeps bytecode
	$(BIN)/bedside demo

lint: $(STAMP)
	$(BIN)/ruff check workflow tests bench
	$(BIN)/ruff format --check workflow tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# One test process per core (pytest-xdist): the reliability campaigns and the Chromium walks
# wait on their own subprocesses, so two cores take the suite in about half the time.
test: $(STAMP) sysdeps lint bytecode
	$(BIN)/python -m pytest -q -n auto

bench: $(STAMP)
	$(BIN)/python bench/run.py

# The reliability campaigns and the schema fuzzing at full size (docs/RELIABILITY.md quotes
# their figures): 60 + 50 SIGKILLs of the CLI and 30 + 25 of `bedside serve`, a 20-client soak
# on both databases, a PostgreSQL restart (it cuts off other users of this machine's server),
# thousands of fuzz cases. BEDSIDE_SEED=N replays another schedule.
soak: $(STAMP) sysdeps
	BEDSIDE_SOAK=1 BEDSIDE_FIGURES=soak-figures.txt $(BIN)/python -m pytest -q -s tests/reliability tests/web/test_schema_fuzz.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
