#!/usr/bin/env bash
# Build BVLC Caffe (CPU by default) from the pinned PyPI source distribution into a cache
# directory keyed by everything that shapes the result, then wire it into the project's venv.
#
#   tools/caffe/build.sh VENV_PYTHON
#
# Environment: MRFNET_CACHE (default ~/.cache/mrfnet-caffe), MRFNET_GPU=1 for a CUDA build
# (README "GPU build": CUDA_DIR, an installed toolkit, else CUDA 13 from the pinned wheels of
# cuda13-wheels.txt; MRFNET_CUDA_ARCH, SM numbers such as "90"; MRFNET_CAFFE_LEAN=1, without
# OpenCV and Python layers, for tools/gpu/make_bundle.sh), MRFNET_JOBS (default: nproc), MRFNET_CAFFE_PATCHES=0 for
# a build without this project's patches (the stock baseline `make bench` compares with), or
# MRFNET_CAFFE_PATCHES=NNNN for the patches up to and including tools/caffe/patches/NNNN-*.patch
# (an earlier state of this build, e.g. 0003, also a `make bench` baseline).
# The build happens in a temporary directory under the cache and is renamed into place only
# when complete, under a lock: an interrupted or concurrent build never leaves a Caffe that
# looks valid. A finished build is marked by the file BUILD_OK.
set -euo pipefail
# The whole script is one compound command: bash parses it completely before running, so editing
# this file while a build runs cannot change what that build does.
{

PY=${1:?usage: build.sh VENV_PYTHON}
HERE=$(cd "$(dirname "$0")" && pwd)
SDIST_NAME=brocolli-caffe
SDIST_VERSION=9.0.2
SDIST_SHA256=c6410cc60bdd6db685d441b66be7df05410f8850ac88d6b75d48ef9b2315c08a
CACHE=${MRFNET_CACHE:-$HOME/.cache/mrfnet-caffe}
GPU=${MRFNET_GPU:-0}
JOBS=${MRFNET_JOBS:-$(nproc)}
PATCHES=${MRFNET_CAFFE_PATCHES:-1}   # 1: all patches; 0: without speedups.sh (stock); NNNN: up to NNNN
APT_PACKAGES="build-essential libboost-system-dev libboost-thread-dev libboost-filesystem-dev
 libboost-regex-dev libboost-python-dev libprotobuf-dev protobuf-compiler libgoogle-glog-dev
 libgflags-dev libhdf5-dev liblmdb-dev libleveldb-dev libsnappy-dev libopencv-dev libopenblas-dev
 libopenblas0-openmp"
# OpenCV 4 dropped the C constants that SSD's extra layers still use; these headers bring them back.
OPENCV4_COMPAT="-include opencv2/imgproc/types_c.h -include opencv2/imgproc/imgproc_c.h -include opencv2/imgcodecs/legacy/constants_c.h -include opencv2/videoio/legacy/constants_c.h"

say() { printf '[caffe] %s\n' "$*" >&2; }
die() { printf '[caffe] ERROR: %s\n' "$*" >&2; exit 1; }

ensure_debian_packages() {
  local missing=()
  for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 \
      || die "apt-get install failed for: ${missing[*]}"
  else
    die "missing Debian packages. Run as root:  apt-get install -y ${missing[*]}"
  fi
}

ensure_debian_packages

PY_INCLUDE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
PY_LIBDIR=$("$PY" -c "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))")
NP_INCLUDE=$("$PY" -c "import numpy; print(numpy.get_include())")
NP_VERSION=$("$PY" -c "import numpy; print(numpy.__version__)")
PY_VERSION=$("$PY" -c "import sys; print('%d.%d' % sys.version_info[:2])")
[ "$PY_VERSION" = 3.11 ] || die "Python 3.11 is required (boost_python311); $PY is $PY_VERSION"

if [ "$GPU" = 1 ]; then
  if [ -n "${CUDA_DIR:-}" ]; then
    [ -x "$CUDA_DIR/bin/nvcc" ] || die "CUDA_DIR=$CUDA_DIR has no bin/nvcc (unset CUDA_DIR to use the pinned CUDA wheels)"
  else
    CUDA_DIR=$(bash "$HERE/cuda_from_wheels.sh" "$PY")
  fi
  NVCC_RELEASE=$("$CUDA_DIR/bin/nvcc" --version | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')
  [ -n "$NVCC_RELEASE" ] || die "$CUDA_DIR/bin/nvcc --version names no release"
  # Machine code (SASS) for each GPU generation, plus PTX of the newest for later GPUs (their
  # driver compiles it at first use: Blackwell, sm_100/sm_120). CUDA 13 builds for Turing
  # (sm_75) and newer only; a CUDA 12 toolkit given as CUDA_DIR covers Volta (sm_70, V100) too.
  # README "GPU build" says why.
  if [ -n "${MRFNET_CUDA_ARCH:-}" ]; then ARCHES=$MRFNET_CUDA_ARCH
  elif [ "${NVCC_RELEASE%%.*}" -ge 13 ]; then ARCHES="75 80 86 89 90"
  else ARCHES="70 75 80 86 89 90"; fi
  CUDA_ARCH=""
  for a in $ARCHES; do CUDA_ARCH+="-gencode arch=compute_$a,code=sm_$a "; done
  CUDA_ARCH+="-gencode arch=compute_${ARCHES##* },code=compute_${ARCHES##* }"
  # No USE_NCCL: this tree has no NCCL code and its Makefile ignores the switch; multi-GPU
  # training is the tree's P2PSync (fix_sources_cuda.sh). cuDNN stays off: cuDNN 8+ removed
  # the cudnnGetConvolution*Algorithm calls this Caffe uses (BVLC issue 6970).
  CPU_OR_GPU="USE_CUDNN := 0
CUDA_DIR := $CUDA_DIR
CUDA_ARCH := $CUDA_ARCH"
  # Lines appended to the config: the binaries find the CUDA libraries through their run path.
  GPU_CONFIG="LINKFLAGS := -Wl,-rpath,$CUDA_DIR/lib64"
  if [ "${MRFNET_CAFFE_LEAN:-0}" = 1 ]; then GPU_CONFIG+=$'\nUSE_OPENCV := 0\nWITH_PYTHON_LAYER := 0'; fi
else
  CPU_OR_GPU="CPU_ONLY := 1"
fi

CONFIG=$(sed -e "s|@PYTHON_INCLUDE@|$PY_INCLUDE|" -e "s|@NUMPY_INCLUDE@|$NP_INCLUDE|" \
             -e "s|@PYTHON_LIBDIR@|$PY_LIBDIR|" "$HERE/Makefile.config.in" \
         | awk -v repl="$CPU_OR_GPU" '{ if ($0 == "@CPU_OR_GPU@") print repl; else print }')
if [ "$GPU" = 1 ]; then CONFIG+=$'\n'"$GPU_CONFIG"; fi
# The key covers what shapes the compiled result: sources, fixes, speedups and patches (when
# applied), config, flags, numpy/Python.
# Bump RECIPE when the compile steps below change in a way that changes the result.
RECIPE=1
# Paths that differ between checkouts (the venv's numpy headers) are not part of the key:
# numpy's version is, and the headers of one version are the same wherever they are installed.
KEY_CONFIG=${CONFIG//$NP_INCLUDE/NUMPY_INCLUDE}
# GPU: a toolkit from the wheels is keyed by its pins (below), not by where the cache lies.
if [ "$GPU" = 1 ] && [ -f "$CUDA_DIR/cuda13-wheels.txt" ]; then KEY_CONFIG=${KEY_CONFIG//$CUDA_DIR/CUDA_DIR}; fi
# The patches this build applies, in order (speedups.sh applies them; see PATCHES above).
case "$PATCHES" in
  0) SELECTED=() ;;
  1) SELECTED=("$HERE"/patches/*.patch) ;;
  [0-9][0-9][0-9][0-9])
     SELECTED=()
     for p in "$HERE"/patches/*.patch; do
       n=$(basename "$p"); [ "${n%%-*}" \> "$PATCHES" ] || SELECTED+=("$p")
     done
     [ ${#SELECTED[@]} -gt 0 ] || die "MRFNET_CAFFE_PATCHES=$PATCHES selects no patch" ;;
  *) die "MRFNET_CAFFE_PATCHES must be 1 (all), 0 (stock) or a patch number such as 0003; got '$PATCHES'" ;;
esac
KEY=$( { echo "$SDIST_SHA256 recipe=$RECIPE"; cat "$HERE/fix_sources.sh"; echo "$KEY_CONFIG";
         echo "$OPENCV4_COMPAT"; echo "numpy=$NP_VERSION py=$PY_VERSION gpu=$GPU";
         if [ "$PATCHES" != 0 ]; then cat "$HERE/speedups.sh" "${SELECTED[@]}";
         else echo "patches=$PATCHES"; fi
         if [ "$GPU" = 1 ]; then cat "$HERE/fix_sources_cuda.sh"; "$CUDA_DIR/bin/nvcc" --version;
           cat "$CUDA_DIR/cuda13-wheels.txt" 2>/dev/null || true; fi; } | sha256sum | cut -c1-16)
DEST="$CACHE/caffe-$KEY"

# Post-build layout that the compiled files expect; idempotent, so it also repairs older caches.
finalize() {
  # _caffe.so has RUNPATH $ORIGIN/../../build/lib, but this tree's Makefile names its link `temp`.
  ln -sfn .temp_release "$1/build"
}

fetch_sdist() {  # the pinned source distribution, downloaded once into the cache and checked
  SDIST="$CACHE/downloads/$SDIST_NAME-$SDIST_VERSION.tar.gz"
  mkdir -p "$CACHE/downloads"
  if [ ! -f "$SDIST" ] || ! echo "$SDIST_SHA256  $SDIST" | sha256sum -c --status; then
    say "downloading $SDIST_NAME==$SDIST_VERSION (source distribution) with pip"
    TMPDL=$(mktemp -d "$CACHE/downloads/tmp.XXXXXX")
    "$PY" -m pip download -q --no-deps --no-binary :all: "$SDIST_NAME==$SDIST_VERSION" -d "$TMPDL" >&2 \
      || die "pip could not download $SDIST_NAME==$SDIST_VERSION"
    mv "$TMPDL/$SDIST_NAME-$SDIST_VERSION.tar.gz" "$SDIST"; rm -rf "$TMPDL"
  fi
  echo "$SDIST_SHA256  $SDIST" | sha256sum -c --status \
    || die "sha256 of $SDIST does not match the pinned $SDIST_SHA256; delete it and retry"
}

prepare_tree() {  # unpack into $1/caffe with the fixes, patches and config of this key; cd there
  local work=$1
  say "unpacking into $work"
  tar xzf "$SDIST" -C "$work"
  TREE="$work/caffe"
  mv "$work/$SDIST_NAME-$SDIST_VERSION" "$TREE"
  cd "$TREE"
  bash "$HERE/fix_sources.sh"
  if [ "$PATCHES" = 0 ]; then
    say "without this project's speedups (stock baseline)"
  else  # speedups.sh applies every patch beside it: give it a folder with the selected ones
    mkdir -p "$work/speedups/patches"
    cp "$HERE/speedups.sh" "$work/speedups/"
    cp "${SELECTED[@]}" "$work/speedups/patches/"
    [ "$PATCHES" = 1 ] || say "patches up to $PATCHES only: $(cd "$work/speedups/patches" && echo *)"
    bash "$work/speedups/speedups.sh"
  fi
  if [ "$GPU" = 1 ]; then bash "$HERE/fix_sources_cuda.sh"; fi
  printf '%s\n' "$CONFIG" > Makefile.config
}

# MRFNET_CAFFE_RUNTEST=1 (`make caffe-runtest`): BVLC's own test suite on a tree prepared exactly
# like this key's build. The tree is kept (with its object files) in runtest-<key>/, so a second
# run compiles nothing; tools/caffe/runtest.sh builds and runs the tests.
if [ "${MRFNET_CAFFE_RUNTEST:-0}" = 1 ]; then
  RT="$CACHE/runtest-$KEY"
  PY_ABS="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"   # before prepare_tree's cd
  mkdir -p "$CACHE"
  exec 8>"$CACHE/.runtest-lock"
  flock 8
  if [ ! -f "$RT/caffe/PREPARED" ]; then
    fetch_sdist
    rm -rf "$RT"; mkdir -p "$RT"
    prepare_tree "$RT"
    touch "$TREE/PREPARED"
  fi
  MRFNET_PYTHON="$PY_ABS" MRFNET_CXXFLAGS="$OPENCV4_COMPAT" bash "$HERE/runtest.sh" "$RT/caffe" "$JOBS"
  exit $?
fi

if [ -f "$DEST/BUILD_OK" ]; then
  finalize "$DEST"
  say "cached build $DEST (key $KEY): nothing to compile"
  echo "$DEST"; exit 0
fi

mkdir -p "$CACHE/downloads"
exec 9>"$CACHE/.lock"
say "waiting for the build lock $CACHE/.lock"
flock 9
if [ -f "$DEST/BUILD_OK" ]; then   # another process finished it while we waited
  finalize "$DEST"; say "cached build $DEST (built by a concurrent run)"; echo "$DEST"; exit 0
fi

fetch_sdist
WORK=$(mktemp -d "$CACHE/build-$KEY.tmp.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
prepare_tree "$WORK"

if [ "$GPU" = 1 ]; then
  say "compiling for CUDA $NVCC_RELEASE, sm_${ARCHES// /, sm_}, with $JOBS jobs (about 20 minutes on 2 idle cores, 47 on a busy one; log: $TREE/build.log)"
else
say "compiling with $JOBS jobs (3.5 to 7 minutes on 2 cores; log: $TREE/build.log)"
fi
start=$(date +%s)
if ! CXXFLAGS="$OPENCV4_COMPAT" make -j"$JOBS" all pycaffe > build.log 2>&1; then
  tail -n 40 build.log >&2
  die "Caffe did not compile; the last 40 lines of the log are above"
fi
protoc --proto_path=src/caffe/proto --python_out=python/caffe/proto src/caffe/proto/caffe.proto
say "compiled in $(( $(date +%s) - start )) s"

# Drop the object files (hundreds of MB); keep libraries, tools, headers and python/.
find .temp_release -name '*.o' -delete
find .temp_release -name '*.d' -delete
finalize "$TREE"
touch BUILD_OK
mv "$TREE" "$DEST.partial"
rm -rf "$DEST"
mv "$DEST.partial" "$DEST"
say "installed $DEST"
echo "$DEST"
exit 0
}
