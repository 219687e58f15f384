# `make demo` runs the main job end to end; `make test` runs the tests. Both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Demo and tests never reach the network: weights come from installed packages or the shared assets.
export MOBICLASS_OFFLINE ?= 1

.PHONY: setup demo test test-slow test-boards keras-env bench-keras clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; run: make PYTHON=python3 ..."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, exactly pinned, so nothing later can pull another build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	# Browser bundles copy onnxruntime-web (WebAssembly, 14 MB) from the npm registry's tarball, checked, once.
	MOBICLASS_OFFLINE=0 $(BIN)/mobiclass toolchains --install web >/dev/null \
		|| echo "warning: onnxruntime-web could not be fetched: browser bundles and their tests wait for it"
	touch $(STAMP)

demo: setup
	$(BIN)/python scripts/demo.py $(DATA)

test: setup
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check mobiclass tests benchmarks scripts
	$(BIN)/mypy
	# Test files spread over one process per core; torch single-threaded in each, so that two processes' thread pools
	# do not spin against each other (2 cores: 549 s against 900 s one after another, same machine and hour).
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -m "not slow" -n auto --dist loadfile

# Accuracy checks on the shared flowers photos (a minute or more each): not part of `make test`.
test-slow: setup
	$(BIN)/python -m pytest -m slow

# The board toolchains (rknn-toolkit2, nncase, tpu-mlir: about 9 GB together) in environments of their own, installed
# on first use, then every board format converted and verified on its simulator. Not part of `make test`.
export MOBICLASS_TOOLCHAINS ?= $(HOME)/.cache/mobiclass/toolchains
test-boards: setup
	$(BIN)/mobiclass toolchains --install all
	MOBICLASS_TEST_BOARDS=1 $(BIN)/python -m pytest tests/test_boards.py

# The Keras side of benchmarks/peer_keras.py: TensorFlow in an environment of its own (its pins are not ours).
KERAS_VENV := .venv-keras
keras-env: $(KERAS_VENV)/.installed
$(KERAS_VENV)/.installed:
	$(PYTHON) -m venv $(KERAS_VENV)
	$(KERAS_VENV)/bin/pip install --quiet tensorflow-cpu==2.21.0 keras==3.15.1 pillow
	touch $@
bench-keras: setup keras-env
	$(BIN)/python benchmarks/peer_keras.py --keras-python $(KERAS_VENV)/bin/python

clean:
	rm -rf $(VENV) $(KERAS_VENV) build *.egg-info .pytest_cache
