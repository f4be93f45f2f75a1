# mrfnet-caffe: the two set-up commands are `make demo` and `make test`; everything else is a step.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
SYSPY ?= python3
DEPS_OK := $(VENV)/.deps-ok

.PHONY: all venv caffe prototxt test demo bench clean help
all: caffe

help:
	@echo "make demo      set up (cached), then train/evaluate a small MRFNet on bundled photos"
	@echo "make test      set up (cached), then run the test suite against real Caffe"
	@echo "make caffe     build BVLC Caffe from source into the cache and link it into $(VENV)"
	@echo "make prototxt  regenerate models/<variant>/*.prototxt"
	@echo "make bench     write docs/benchmarks.md and docs/benchmarks.json (builds a stock Caffe to compare)"

$(DEPS_OK): requirements.txt setup.py
	@test -x $(PY) || $(SYSPY) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

venv: $(DEPS_OK)

caffe: $(DEPS_OK)
	@dir=$$(tools/caffe/build.sh $(PY)) && tools/caffe/link_venv.sh $(VENV) "$$dir" . \
	  && $(PY) -c "import caffe; print('[caffe] pycaffe OK:', caffe.__file__)"

prototxt: caffe
	$(BIN)/mrfnet prototxt --out models

test: caffe
	$(BIN)/python -m pytest -q tests

demo: caffe
	$(BIN)/mrfnet demo

# The stock build (no project patches) is a second cache entry, built once, for before/after rows.
bench: caffe
	@base=$$(MRFNET_CAFFE_PATCHES=0 tools/caffe/build.sh $(PY)) \
	  && $(BIN)/mrfnet bench --out docs --baseline-caffe "$$base"

clean:
	rm -rf $(VENV) .pytest_cache
