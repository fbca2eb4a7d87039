# The two entry points: `make demo` (the main job) and `make test`.
# Both create .venv from a bare Python and install first.
PYTHON ?= python3
VENV ?= .venv
# The CPU build on this disk; for CUDA, e.g. `make demo TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"`.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
# pytest-xdist workers for `make test`, one thread each (tests/conftest.py): one per core of a 2-core machine
TEST_WORKERS ?= 2

.PHONY: install demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install $(TORCH)
	$(BIN)/python -m pip install -e ".[dev,examples]"
	touch $@

install: $(VENV)/.installed

# The main job: DIAMOND end to end on Pong with the CPU-sized "demo" preset (resumable), then a
# side-by-side GIF of the real game and the dream with the trained agent playing.
demo: install
	$(BIN)/python -m training.pipeline --game Pong --preset demo --out runs/Pong-demo
	$(BIN)/python examples/dream_vs_real.py runs/Pong-demo

test: install
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

clean:
	rm -rf $(VENV) build *.egg-info
