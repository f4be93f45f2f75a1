#!/usr/bin/env bash
# MRFNet's `caffe train` at the paper's setting on a lent GPU, for a time budget, then the
# deploy net's forward time; everything it measures lands in at most 8 files under --out.
#
#   bash tools/gpu/run_on_device.sh --budget 480            # on the GPU machine, into $OUT
#   bash tools/gpu/run_on_device.sh --cpu --bundle DIR --out DIR --train-seconds 8 --crop 32 \
#        --batch 2 --crops 1 --photo-size 128 --deploy-size 64x48 --time-iters 1   # CPU rehearsal
#
# Steps (docs/gpu.md): unpack the Caffe bundle of tools/gpu/make_bundle.sh; find the CUDA
# libraries among the machine's Python nvidia-* packages; `caffe device_query -gpu 0`; render
# the bundled photos into an LMDB with the project's converter (data_prep, `mrfnet convert`);
# `caffe train -gpu 0` of models/mrfnet/train.prototxt (stock eq. (5) loss, Adam, batch 16 of
# 256x256) until the budget's end, stopped with SIGINT, on which Caffe snapshots; `caffe time
# -gpu 0` of models/mrfnet/deploy.prototxt at 1280x768; a summary. nvidia-smi samples GPU
# memory throughout. Files in --out: run.log, train.log, time.log, gpu_memory.csv, summary.json,
# summary.md, mrfnet_gpu.caffemodel.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
T0=$(date +%s)
unset GLOG_minloglevel   # the summary reads Caffe's INFO lines

MODE=gpu
BUNDLE=$ROOT/.gpu/caffe-gpu-bundle.tar.xz
OUTDIR=${OUT:-$ROOT/results/gpu-run}
BUDGET=480          # seconds for the whole script
RESERVE=60          # seconds kept after training for caffe time and the summary
TRAIN_SECONDS=""    # fixed training time instead (the CPU rehearsal: a loaded machine's
                    # slower data step then costs time, not training)
CROP=256; BATCH=16; CROPS=128; PHOTO_SIZE=0; DEPLOY=1280x768; TIME_ITERS=20
PY=${PYTHON:-python3}
WORKERS=$(n=$(nproc); [ "$n" -gt 16 ] && n=16; echo "$n")
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) MODE=cpu; shift ;;
    --bundle) BUNDLE=$2; shift 2 ;;
    --out) OUTDIR=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    --reserve) RESERVE=$2; shift 2 ;;
    --train-seconds) TRAIN_SECONDS=$2; shift 2 ;;
    --crop) CROP=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    --crops) CROPS=$2; shift 2 ;;
    --photo-size) PHOTO_SIZE=$2; shift 2 ;;
    --deploy-size) DEPLOY=$2; shift 2 ;;
    --time-iters) TIME_ITERS=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    -h|--help) sed -n 2,18p "$0"; exit 0 ;;
    *) echo "run_on_device.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
DEPLOY_W=${DEPLOY%x*}; DEPLOY_H=${DEPLOY#*x}

mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
rm -f "$OUTDIR"/{run.log,train.log,time.log,gpu_memory.csv,summary.json,summary.md,mrfnet_gpu.caffemodel}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mrfnet-gpu-run.XXXXXX")
POLL_PID=""
cleanup() { [ -n "$POLL_PID" ] && kill "$POLL_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
log() { printf '[run +%ss] %s\n' "$(( $(date +%s) - T0 ))" "$*" | tee -a "$OUTDIR/run.log" >&2; }
mark() { echo "$1 $(date +%s)" >> "$WORK/phases"; [ "$MODE" = gpu ] && echo "# $1 $(date +%s)" >> "$OUTDIR/gpu_memory.csv"; true; }
summarize() {
  "$PY" "$ROOT/tools/gpu/summarize.py" --out "$OUTDIR" --phases "$WORK/phases" --mode "$MODE" \
    --setting "batch=$BATCH crop=$CROP deploy=${DEPLOY_W}x${DEPLOY_H} budget=$BUDGET" >> "$OUTDIR/run.log" 2>&1 \
    || log "summary failed (see above)"
}
fail() { log "FAILED: $*"; summarize; exit 1; }
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
log "mode $MODE, budget ${BUDGET}s, batch $BATCH of ${CROP}x$CROP, deploy ${DEPLOY_W}x$DEPLOY_H, out $OUTDIR"
mark start

# 1. The bundle.
if [ -d "$BUNDLE" ]; then B=$(cd "$BUNDLE" && pwd)
elif [ -f "$BUNDLE" ]; then  # tar needs the xz program for -J; Python's tarfile does not
  tar -C "$WORK" -xJf "$BUNDLE" 2>/dev/null || "$PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
    "$BUNDLE" "$WORK" || fail "cannot unpack $BUNDLE"
  B="$WORK/caffe-bundle"
else fail "no bundle at $BUNDLE: run tools/gpu/make_bundle.sh (make gpu-bundle) first"; fi
log "bundle: $(head -1 "$B/MANIFEST.txt")"
cat "$B/MANIFEST.txt" >> "$OUTDIR/run.log"
CAFFE="$B/bin/caffe.bin"
LIBPATH="$B/lib"

# 2. CUDA libraries: the machine's own, from its Python's nvidia-* packages (or a toolkit).
if [ "$MODE" = gpu ]; then
  NEEDED=$(sed -n 's/^cuda_libs: //p' "$B/MANIFEST.txt")
  CUDA_DIRS=$("$PY" "$ROOT/tools/gpu/find_cuda_libs.py" $NEEDED 2>>"$OUTDIR/run.log") || fail "the CUDA libraries this build needs ($NEEDED) are not among $PY's packages (run.log says where it looked)"
  LIBPATH="$LIBPATH:$CUDA_DIRS"
  log "CUDA libraries from $CUDA_DIRS"
fi
export LD_LIBRARY_PATH="$LIBPATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ! out=$("$CAFFE" --version 2>&1); then
  # Built against a newer C++ runtime than the system's: use the one it was built with.
  if echo "$out" | grep -q 'GLIBCXX\|libstdc++\|libgcc_s'; then
    export LD_LIBRARY_PATH="$B/lib/fallback:$LD_LIBRARY_PATH"
    out=$("$CAFFE" --version 2>&1) || fail "caffe.bin does not start: $out"
    log "using the bundle's C++ runtime (the system's is older)"
  else
    fail "caffe.bin does not start: $out"
  fi
fi
log "$out"

# 3. The GPU.
if [ "$MODE" = gpu ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv >> "$OUTDIR/run.log" 2>&1 \
    || log "nvidia-smi failed"
  GLOG_logtostderr=1 "$CAFFE" device_query -gpu 0 >> "$OUTDIR/run.log" 2>&1 || fail "caffe device_query -gpu 0 failed (run.log)"
  log "device_query -gpu 0 OK"
  echo "# timestamp, memory.used [MiB], utilization.gpu [%]; '# phase epoch-seconds' lines mark the steps" >> "$OUTDIR/gpu_memory.csv"
  nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv,noheader,nounits -lms 500 \
    >> "$OUTDIR/gpu_memory.csv" 2>/dev/null &
  POLL_PID=$!
fi

# 4. Training data: the bundled photos, rendered with the authors' blur recipe into an LMDB.
mark data
SITE="$WORK/site"
if ls "$B"/wheels/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$B"/wheels/*.whl \
    >> "$OUTDIR/run.log" 2>&1 || fail "pip could not install the bundle's wheels"
fi
export PYTHONPATH="$ROOT:$B/python:$SITE${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import numpy, cv2, skimage, lmdb, google.protobuf" >> "$OUTDIR/run.log" 2>&1 \
  || fail "$PY lacks a package the converter needs (numpy, cv2, skimage, lmdb, protobuf; run.log)"
# The photos first, as they are (--photo-size 0), crops from them; only the train split.
"$PY" -m mrfnet.cli convert --source bundled --bundled-split train --out "$WORK/data" \
    --crops "$CROPS" --crop-size "$CROP" --size "$PHOTO_SIZE" --workers "$WORKERS" --seed 0 \
    >> "$OUTDIR/run.log" 2>&1 || fail "mrfnet convert failed (run.log)"
log "data: $(tail -1 "$OUTDIR/run.log")"

# 5. Nets and solver from the committed files: the stock-loss train net with this database,
#    batch and crop; the paper's Adam solver without a test net, snapshot only at the end.
sed -e "s|source: \"data/train_lmdb\"|source: \"$WORK/data/train_lmdb\"|" -e "s|batch_size: 16|batch_size: $BATCH|" \
    -e "s|crop_size: 256|crop_size: $CROP|" "$ROOT/models/mrfnet/train.prototxt" > "$WORK/train.prototxt"
grep -q "source: \"$WORK/data/train_lmdb\"" "$WORK/train.prototxt" && grep -q "batch_size: $BATCH\$" "$WORK/train.prototxt" \
  || fail "models/mrfnet/train.prototxt changed form (source/batch_size lines); update step 5"
[ "$MODE" = gpu ] && SOLVER_MODE=GPU || SOLVER_MODE=CPU
[ "$MODE" = gpu ] && SHOW_EVERY=20 || SHOW_EVERY=1
solver() {  # solver(prefix, max_iter)
  grep -v -E '^(test_net|test_iter|test_interval|test_initialization|train_net|max_iter|snapshot|snapshot_prefix|solver_mode|display):' \
    "$ROOT/models/mrfnet/solver.prototxt"
  printf 'train_net: "%s"\nmax_iter: %s\nsnapshot: 0\nsnapshot_prefix: "%s"\nsolver_mode: %s\ndisplay: %s\n' \
    "$WORK/train.prototxt" "$2" "$1" "$SOLVER_MODE" "$SHOW_EVERY"
}
mkdir -p "$WORK/snap"
solver "$WORK/snap/mrfnet_gpu" 100000000 > "$WORK/solver.prototxt"
awk -v h="$DEPLOY_H" -v w="$DEPLOY_W" '
  /shape \{/ && !done { inshape = 1; n = 0 }
  inshape && /dim:/ { n++; if (n == 3) sub(/dim: [0-9]+/, "dim: " h); if (n == 4) { sub(/dim: [0-9]+/, "dim: " w); inshape = 0; done = 1 } }
  { print }' "$ROOT/models/mrfnet/deploy.prototxt" > "$WORK/deploy.prototxt"
grep -q "dim: $DEPLOY_W" "$WORK/deploy.prototxt" || fail "could not set the deploy input to ${DEPLOY_W}x$DEPLOY_H"
GPU_FLAG=(); [ "$MODE" = gpu ] && GPU_FLAG=(-gpu 0)

# 6. Train until the budget's end less the reserve; SIGINT makes Caffe snapshot and stop.
TRAIN_S=${TRAIN_SECONDS:-$(( $(left) - RESERVE ))}
[ "$TRAIN_S" -ge 5 ] || fail "budget too small: ${TRAIN_S}s left for training"
log "caffe train ${GPU_FLAG[*]} for ${TRAIN_S}s"
mark train
(cd "$WORK" && GLOG_logtostderr=1 timeout --preserve-status -s INT -k 60 "$TRAIN_S" \
   "$CAFFE" train -solver "$WORK/solver.prototxt" "${GPU_FLAG[@]}" -sigint_effect stop) > "$OUTDIR/train.log" 2>&1
rc=$?
mark trained
MODEL=$(ls -t "$WORK"/snap/*.caffemodel 2>/dev/null | head -1)
[ "$rc" = 0 ] && [ -n "$MODEL" ] || fail "caffe train exit status $rc (train.log)"
cp "$MODEL" "$OUTDIR/mrfnet_gpu.caffemodel"
log "trained: $(basename "$MODEL")"

# 7. Forward (and backward) time of the deploy net.
log "caffe time ${GPU_FLAG[*]} at ${DEPLOY_W}x$DEPLOY_H, $TIME_ITERS iterations"
mark time
GLOG_logtostderr=1 "$CAFFE" time -model "$WORK/deploy.prototxt" "${GPU_FLAG[@]}" -iterations "$TIME_ITERS" \
  > "$OUTDIR/time.log" 2>&1 || log "caffe time failed (time.log)"
mark timed
summarize

log "done in $(( $(date +%s) - T0 ))s: $(ls "$OUTDIR" | tr '\n' ' ')"
