#!/usr/bin/env bash
# Assemble a CUDA toolkit directory (Caffe's CUDA_DIR) from the pinned NVIDIA wheels of
# tools/caffe/cuda13-wheels.txt, inside the Caffe cache; print its path.
#
#   tools/caffe/cuda_from_wheels.sh VENV_PYTHON
#
# The wheels are downloaded with the venv's pip, which checks every file against its pinned
# sha256 (hash-checking mode), and installed with pip into a temporary folder; their files are
# then laid out as a toolkit: bin/ (nvcc, ptxas, cudafe++, fatbinary, nvlink), nvvm/ (cicc,
# libdevice), include/ (runtime, crt, CCCL, cuBLAS, cuRAND, NCCL headers) and lib/ (= lib64/:
# cudart, cuBLAS, cuRAND, NCCL, with the unversioned names the linker looks for). Like the
# Caffe build it is made under a lock in a temporary directory and renamed into place when
# complete (marked by CUDA_OK): $MRFNET_CACHE/cuda-<nvcc version>-<hash of the pin file>/.
set -euo pipefail

PY=${1:?usage: cuda_from_wheels.sh VENV_PYTHON}
HERE=$(cd "$(dirname "$0")" && pwd)
PINS="$HERE/cuda13-wheels.txt"
CACHE=${MRFNET_CACHE:-$HOME/.cache/mrfnet-caffe}

say() { printf '[cuda] %s\n' "$*" >&2; }
die() { printf '[cuda] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(uname -m)" = x86_64 ] || die "the pinned CUDA wheels are for x86-64 Linux; on $(uname -m) set CUDA_DIR to an installed CUDA toolkit"
NVCC_VERSION=$(sed -n 's/^nvidia-cuda-nvcc==\([0-9.]*\) .*/\1/p' "$PINS")
[ -n "$NVCC_VERSION" ] || die "no nvidia-cuda-nvcc pin in $PINS"
DEST="$CACHE/cuda-$NVCC_VERSION-$(sha256sum < "$PINS" | cut -c1-8)"

if [ -f "$DEST/CUDA_OK" ]; then echo "$DEST"; exit 0; fi
mkdir -p "$CACHE"
exec 8>"$CACHE/.cuda-lock"
flock 8
if [ -f "$DEST/CUDA_OK" ]; then echo "$DEST"; exit 0; fi

WORK=$(mktemp -d "$CACHE/cuda.tmp.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
DL="$WORK/wheels"   # deleted with $WORK: the assembled toolkit is what the cache keeps
start=$(date +%s)
say "downloading the pinned CUDA $NVCC_VERSION wheels with pip (about 0.8 GB; hashes checked)"
"$PY" -m pip download -q --no-deps --only-binary :all: -r "$PINS" -d "$DL" >&2 \
  || die "pip could not download the CUDA wheels of $PINS (or a hash did not match)"
say "downloaded in $(( $(date +%s) - start )) s; installing into $WORK"
start=$(date +%s)
"$PY" -m pip install -q --no-deps --no-index --no-compile --find-links "$DL" --target "$WORK/site" \
  -r "$PINS" >&2 || die "pip could not install the CUDA wheels from $DL"

SITE="$WORK/site/nvidia"
T="$WORK/cuda"
[ -x "$SITE/cu13/bin/nvcc" ] || die "the nvcc wheel did not provide bin/nvcc (layout changed?)"
mv "$SITE/cu13" "$T"
mv "$SITE/nccl/include/"* "$T/include/"
mv "$SITE/nccl/lib/"* "$T/lib/"
rm -rf "$WORK/site"
# Linker names (-lcudart ...) for the versioned libraries the wheels ship, and lib64/, where
# nvcc.profile and Caffe's Makefile look first.
for so in "$T"/lib/lib*.so.*; do
  name=$(basename "$so"); link="$T/lib/${name%%.so.*}.so"
  [ -e "$link" ] || ln -s "$name" "$link"
done
ln -s lib "$T/lib64"
"$T/bin/nvcc" --version >&2 || die "the assembled nvcc does not run"
cp "$PINS" "$T/cuda13-wheels.txt"
touch "$T/CUDA_OK"
rm -rf "$DEST"
mv "$T" "$DEST"
say "assembled $DEST in $(( $(date +%s) - start )) s"
echo "$DEST"
