# mrfnet-caffe: the two set-up commands are `make demo` and `make test`; everything else is a step.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
SYSPY ?= python3
DEPS_OK := $(VENV)/.deps-ok

.PHONY: all venv caffe prototxt test demo bench clean help caffe-gpu gpu-bundle gpu-tiles gpu-rehearsal
all: caffe

help:
	@echo "make demo      set up (cached), then train/evaluate a small MRFNet on bundled photos"
	@echo "make test      set up (cached), then run the test suite against real Caffe"
	@echo "make caffe     build BVLC Caffe from source into the cache and link it into $(VENV)"
	@echo "make prototxt  regenerate models/<variant>/*.prototxt"
	@echo "make bench     write docs/benchmarks.md and docs/benchmarks.json (builds a stock Caffe to compare)"
	@echo "make caffe-runtest  build and run BVLC Caffe's own test suite on this project's build"
	@echo "make caffe-gpu = MRFNET_GPU=1 make caffe: the CUDA build (not in CI; README 'GPU build')"
	@echo "make gpu-bundle     the CUDA bundle for a lent GPU machine (.gpu/, docs/gpu.md)"
	@echo "make gpu-tiles AERIAL=DIR  the training tiles that travel to the GPU (.gpu/aerial_tiles)"
	@echo "make gpu-rehearsal  tools/gpu/run_on_device.sh on the CPU with a bundle of the CPU build"

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
# So is this build before patch 0004 (MRFNET_CAFFE_PATCHES=0003), for the training rows.
bench: caffe
	@base=$$(MRFNET_CAFFE_PATCHES=0 tools/caffe/build.sh $(PY)) \
	  && before=$$(MRFNET_CAFFE_PATCHES=0003 tools/caffe/build.sh $(PY)) \
	  && $(BIN)/mrfnet bench --out docs --baseline-caffe "$$base" --before-caffe "$$before" \
	     $(if $(VAL),--val $(VAL))

clean:
	rm -rf $(VENV) .pytest_cache

# BVLC's own gtest suite on this project's CPU build (fixes + patches + config of `make caffe`),
# each test case in its own process; not in CI (about 25 minutes the first time on 2 cores).
# MRFNET_CAFFE_PATCHES=0 make caffe-runtest runs it on the stock build (docs/performance.md).
.PHONY: caffe-runtest
caffe-runtest: $(DEPS_OK)
	MRFNET_CAFFE_RUNTEST=1 tools/caffe/build.sh $(PY)

# GPU (README "GPU build", docs/gpu.md). caffe-gpu is `MRFNET_GPU=1 make caffe`: CUDA 13 from the
# pinned wheels, compiled and linked into the venv (`make test` links the CPU build again).
caffe-gpu:
	@MRFNET_GPU=1 $(MAKE) --no-print-directory caffe

# The lean sm_90 CUDA build packed for the lent H200 (.gpu/ is ignored by git and travels with
# the device tool's carry).
gpu-bundle: $(DEPS_OK)
	tools/gpu/make_bundle.sh

# The aerial training tiles for the device run (docs/gpu.md): 256x256 JPEG, never a held-out
# one, as many as the 64 MiB carry leaves (tools/gpu/prep_tiles.py). AERIAL = the tiles' folder.
gpu-tiles: $(DEPS_OK)
	@test -n "$(AERIAL)" || { echo "make gpu-tiles AERIAL=folder of the aerial tiles (docs/gpu.md)" >&2; exit 2; }
	$(PY) tools/gpu/prep_tiles.py --images "$(AERIAL)" --out .gpu/aerial_tiles

# The device script on this CPU with a bundle of the venv's CPU build and tiny sizes, twice: the
# bundled photos (10 s of training), then the path of a real run: tiles made by prep_tiles.py
# (from the bundled photos here), the shipped weights, poly lr after a first run measures the rate.
R := results/gpu-rehearsal
gpu-rehearsal: caffe
	@set -e; bundle=$$(tools/gpu/make_bundle.sh --cpu results/caffe-cpu-bundle); export PYTHON=$(abspath $(PY)); \
	  tiny="--cpu --bundle $$bundle --train-seconds 10 --crop 32 --batch 2 --deploy-size 64x48 --time-iters 1"; \
	  bash tools/gpu/run_on_device.sh $$tiny --out $(R) --crops 1 --photo-size 128; cat $(R)/summary.md; \
	  $(BIN)/mrfnet pairs --bundled train --out $(R)-photos --force; \
	  $(PY) tools/gpu/prep_tiles.py --images $(R)-photos/sharp --out $(R)-tiles --size 64 --max-mib 1; \
	  bash tools/gpu/run_on_device.sh $$tiny --out $(R)-tiles-run --tiles $(R)-tiles --crops 2 --photo-size 64 \
	    --lr-policy poly --calib-iters 4; \
	  cat $(R)-tiles-run/summary.md
