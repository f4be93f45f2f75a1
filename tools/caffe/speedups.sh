#!/usr/bin/env bash
# This project's speed and memory changes to BVLC Caffe, run inside the unpacked tree after
# fix_sources.sh. build.sh skips them with MRFNET_CAFFE_PATCHES=0: the stock build that
# `make bench` measures them against (docs/benchmarks.md, docs/performance.md). Kept apart from
# fix_sources.sh so that the stock build's cache key does not change when these do.
set -euo pipefail

# 1. Patches, in order; each file says why at its top and tests/test_caffe_patches.py checks
#    what it promises against the built Caffe.
for p in "$(dirname "$0")"/patches/*.patch; do
  patch -p1 --forward --quiet < "$p" || { echo "speedups: $p does not apply" >&2; exit 1; }
done

# 2. The classic Makefile compiles with -O2, which leaves element-wise loops scalar (gcc 12
#    vectorises at -O2 only loops that need no alias check: in-place ReLU and the pooling of
#    patch 0002 do). Those two files get -O3 (ReLU went from 13% of the MRFNet forward to 2%).
#    Only those: a global -O3 made the convolution layers about 20% slower here
#    (docs/performance.md). No -march=native: the cached build stays portable across x86-64.
cat >> Makefile <<'MAKE'

# mrfnet-caffe (tools/caffe/speedups.sh step 2): -O3 where the loops must vectorise.
$(BUILD_DIR)/src/caffe/layers/pooling_layer.o $(BUILD_DIR)/src/caffe/layers/relu_layer.o: CXXFLAGS += -O3
MAKE
