#!/usr/bin/env bash
# MRFNet's `caffe train` at the paper's batch (16 x 256x256) on a lent GPU, for a time budget,
# then the deploy net's forward time; everything it measures lands in at most 8 files under --out.
#
#   bash tools/gpu/run_on_device.sh --budget 480            # on the GPU machine, into $OUT
#   bash tools/gpu/run_on_device.sh --budget 480 --tiles .gpu/aerial_tiles --lr-policy poly
#        # from the shipped weights on the carried aerial tiles (docs/gpu.md)
#   bash tools/gpu/run_on_device.sh --cpu --bundle DIR --out DIR --train-seconds 8 --crop 32 \
#        --batch 2 --crops 1 --photo-size 128 --deploy-size 64x48 --time-iters 1   # CPU rehearsal
#
# Steps (docs/gpu.md): unpack the Caffe bundle of tools/gpu/make_bundle.sh; find the CUDA
# libraries among the machine's Python nvidia-* packages; `caffe device_query -gpu 0`; render
# the training data into an LMDB with the project's converter (`mrfnet convert`, the authors'
# blur recipe): the sharp tiles of --tiles (tools/gpu/prep_tiles.py; none of --exclude), else
# the bundled photos; the stock-loss train net and Adam solver written by the project's
# generators (`mrfnet caffe-stages --dry-run`, one equal-weight stage); `caffe train -gpu 0
# -weights W` (the shipped model unless --weights none) until --iters or the budget's end
# (stopped with SIGINT, on which Caffe snapshots); with --lr-policy poly and no --iters, a
# short first run measures the seconds per iteration and the rest resumes from its state with
# max_iter set so that the lr reaches 0 at the budget's end; `caffe time -gpu 0` of
# models/mrfnet/deploy.prototxt at 1280x768; a summary. nvidia-smi samples GPU memory
# throughout. Files in --out: run.log, train.log, time.log, gpu_memory.csv, summary.json,
# summary.md, mrfnet_gpu.caffemodel. Training options: --weights FILE|none, --tiles DIR,
# --exclude LIST, --crops N, --photo-size N, --batch N, --crop N, --base-lr LR, --lr-policy
# step|poly, --iters N, --stepsize N, --clip-gradients NORM, --calib-iters N, --seed N.
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
CROP=256; BATCH=16; CROPS=""; PHOTO_SIZE=""; DEPLOY=1280x768; TIME_ITERS=20
WEIGHTS=$ROOT/models/mrfnet/mrfnet.caffemodel   # "none": from the initial fillers
TILES=""            # folder of sharp training tiles (tools/gpu/prep_tiles.py); else bundled photos
EXCLUDE=$ROOT/models/mrfnet/heldout_aerial.txt  # names that must not be among the tiles
BASE_LR=1e-4; LR_POLICY=step; ITERS=""; STEPSIZE=""; CLIP=""; SEED=0
CALIB_ITERS=40      # poly without --iters: iterations of the first run that measures the rate
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
    --crops) CROPS=$2; shift 2 ;;             # patches per photo (default 128; tiles: 8 blur draws)
    --photo-size) PHOTO_SIZE=$2; shift 2 ;;   # resize first (default 0 = as they are; tiles: 256)
    --deploy-size) DEPLOY=$2; shift 2 ;;
    --time-iters) TIME_ITERS=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --weights) WEIGHTS=$2; shift 2 ;;
    --tiles) TILES=$2; shift 2 ;;
    --exclude) EXCLUDE=$2; shift 2 ;;
    --base-lr) BASE_LR=$2; shift 2 ;;
    --lr-policy) LR_POLICY=$2; shift 2 ;;     # step (the paper's: halved every 10 epochs) or poly
    --iters) ITERS=$2; shift 2 ;;             # max_iter (default: train until the budget's end)
    --stepsize) STEPSIZE=$2; shift 2 ;;
    --clip-gradients) CLIP=$2; shift 2 ;;
    --calib-iters) CALIB_ITERS=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    -h|--help) sed -n 2,25p "$0"; exit 0 ;;
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
    --setting "batch=$BATCH crop=$CROP deploy=${DEPLOY_W}x${DEPLOY_H} budget=$BUDGET data=${DATA:-} weights=$(basename "$WEIGHTS") lr=$BASE_LR $LR_POLICY iters=${ITERS:-budget}" >> "$OUTDIR/run.log" 2>&1 \
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

# 4. Training data, rendered with the authors' blur recipe into an LMDB: the carried sharp tiles
#    (a new blur draw for each of --crops patches per tile), else the bundled training photos.
mark data
SITE="$WORK/site"
if ls "$B"/wheels/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$B"/wheels/*.whl \
    >> "$OUTDIR/run.log" 2>&1 || fail "pip could not install the bundle's wheels"
fi
export PYTHONPATH="$ROOT:$B/python:$SITE${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import numpy, cv2, skimage, lmdb, six, google.protobuf" >> "$OUTDIR/run.log" 2>&1 \
  || fail "$PY lacks a package the converter or the net generator needs (numpy, cv2, skimage, lmdb, six, protobuf; run.log)"
if [ -n "$TILES" ]; then
  [ -d "$TILES" ] || fail "--tiles $TILES: no such folder (carry it: docs/gpu.md)"
  # Held-out tiles never train: tools/gpu/prep_tiles.py leaves them out; check it, by stem.
  [ -f "$EXCLUDE" ] || fail "--exclude $EXCLUDE: no such list file"
  held=$(ls "$TILES" | sed 's/\.[^.]*$//' | grep -Fx -f <(grep -v '^#' "$EXCLUDE" | sed 's/\.[^.]*$//') | head -3)
  [ -z "$held" ] || fail "--tiles $TILES holds names of $(basename "$EXCLUDE") ($held ...): make the folder with tools/gpu/prep_tiles.py"
  "$PY" -m mrfnet.cli convert --source sharp --images "$TILES" --out "$WORK/data" --crops "${CROPS:-8}" \
      --crop-size "$CROP" --size "${PHOTO_SIZE:-256}" --workers "$WORKERS" --seed "$SEED" \
      >> "$OUTDIR/run.log" 2>&1 || fail "mrfnet convert of --tiles failed (run.log)"
  DATA="tiles $(basename "$TILES")"
else
  # The photos first, as they are (--photo-size 0), crops from them; only the train split.
  "$PY" -m mrfnet.cli convert --source bundled --bundled-split train --out "$WORK/data" \
      --crops "${CROPS:-128}" --crop-size "$CROP" --size "${PHOTO_SIZE:-0}" --workers "$WORKERS" --seed "$SEED" \
      >> "$OUTDIR/run.log" 2>&1 || fail "mrfnet convert failed (run.log)"
  DATA="bundled photos"
fi
log "data: $(tail -1 "$OUTDIR/run.log")"

# 5. The train net and solver from the project's generators (`mrfnet caffe-stages --dry-run`:
#    the stock eq. (5) loss, one EuclideanLoss per scale with equal weights, as
#    models/mrfnet/train.prototxt; Adam as models/mrfnet/solver.prototxt; no test net) with this
#    database, batch, crop and lr; the deploy net at the timing size.
[ "$MODE" = gpu ] && SHOW_EVERY=20 || SHOW_EVERY=1
GPUS_OPT=(); [ "$MODE" = gpu ] && GPUS_OPT=(--gpus 0)
RUN="$WORK/run"
nets() {  # nets(max_iter, lr_policy, display): stage1_train.prototxt, stage1_solver.prototxt in $RUN
  "$PY" -m mrfnet.cli caffe-stages --dry-run --train-db "$WORK/data/train_lmdb" --out "$RUN" \
    --batch "$BATCH" --crop "$CROP" --iters "$1" --lr-policy "$2" --display "$3" --snapshot-every "$1" \
    --base-lr "$BASE_LR" ${STEPSIZE:+--stepsize "$STEPSIZE"} ${CLIP:+--clip-gradients "$CLIP"} --seed "$SEED" \
    --loss-groups "$ROOT/models/mrfnet/loss_groups_equal.json" "${GPUS_OPT[@]}" >> "$OUTDIR/run.log" 2>&1 \
    || fail "mrfnet caffe-stages --dry-run failed (run.log)"
}
awk -v h="$DEPLOY_H" -v w="$DEPLOY_W" '
  /shape \{/ && !done { inshape = 1; n = 0 }
  inshape && /dim:/ { n++; if (n == 3) sub(/dim: [0-9]+/, "dim: " h); if (n == 4) { sub(/dim: [0-9]+/, "dim: " w); inshape = 0; done = 1 } }
  { print }' "$ROOT/models/mrfnet/deploy.prototxt" > "$WORK/deploy.prototxt"
grep -q "dim: $DEPLOY_W" "$WORK/deploy.prototxt" || fail "could not set the deploy input to ${DEPLOY_W}x$DEPLOY_H"
GPU_FLAG=(); [ "$MODE" = gpu ] && GPU_FLAG=(-gpu 0)
START=()
if [ "$WEIGHTS" != none ]; then
  [ -f "$WEIGHTS" ] || fail "--weights $WEIGHTS: no such file"
  START=(-weights "$(realpath "$WEIGHTS")")
fi

# 6. Train until --iters or the budget's end less the reserve; SIGINT makes Caffe snapshot and stop.
TRAIN_S=${TRAIN_SECONDS:-$(( $(left) - RESERVE ))}
[ "$TRAIN_S" -ge 5 ] || fail "budget too small: ${TRAIN_S}s left for training"
caffe_train() {  # caffe_train(seconds, log, more arguments of caffe train)
  local s=$1 log=$2; shift 2
  (cd "$RUN" && GLOG_logtostderr=1 timeout --preserve-status -s INT -k 60 "$s" \
     "$CAFFE" train -solver stage1_solver.prototxt "${GPU_FLAG[@]}" -sigint_effect stop "$@") > "$log" 2>&1
}
last_state() { ls -t "$RUN"/snapshots/*.solverstate 2>/dev/null | head -1; }
log "caffe train${GPU_FLAG[*]:+ ${GPU_FLAG[*]}} ${START[*]:-(from scratch)} on $DATA, lr $BASE_LR $LR_POLICY, ${ITERS:+$ITERS iterations or }at most ${TRAIN_S}s"
mark train
if [ "$LR_POLICY" = poly ] && [ -z "$ITERS" ]; then
  # poly needs the last iteration: a first run at the base lr measures the seconds per iteration,
  # then the rest resumes from its state with max_iter = what the remaining time holds.
  t1=$(date +%s)
  nets "$CALIB_ITERS" step $(( CALIB_ITERS / 8 > 1 ? CALIB_ITERS / 8 : 1 ))
  caffe_train "$TRAIN_S" "$WORK/calibrate.log" "${START[@]}"
  rc=$?
  { echo "--- first run: $CALIB_ITERS iterations to measure the rate (its train.log) ---"; cat "$WORK/calibrate.log"; } >> "$OUTDIR/run.log"
  spent=$(( $(date +%s) - t1 ))
  RATE=$("$PY" "$ROOT/tools/gpu/summarize.py" --rate "$WORK/calibrate.log")
  STATE=$(last_state)
  [ "$rc" = 0 ] && [ -n "$RATE" ] && [ -n "$STATE" ] || fail "the first run (rate) failed: exit status $rc, rate '$RATE' (run.log)"
  # Set-up time (net, database, device) as the first run's: its wall time less its iterations.
  ITERS=$("$PY" -c "import sys; r, n, left, spent = map(float, sys.argv[1:]); setup = max(0.0, spent - n * r)
print(int(n + max(0.0, left - spent - setup) * 0.97 / r))" "$RATE" "$CALIB_ITERS" "$TRAIN_S" "$spent")
  log "first run: ${RATE}s per iteration, $spent s in all; poly to 0 at iteration $ITERS"
  nets "$ITERS" poly "$SHOW_EVERY"
  caffe_train $(( TRAIN_S - spent > 5 ? TRAIN_S - spent : 5 )) "$OUTDIR/train.log" -snapshot "$(realpath "$STATE")"
  rc=$?
else
  nets "${ITERS:-100000000}" "$LR_POLICY" "$SHOW_EVERY"
  caffe_train "$TRAIN_S" "$OUTDIR/train.log" "${START[@]}"
  rc=$?
fi
mark trained
MODEL=$(ls -t "$RUN"/snapshots/*.caffemodel 2>/dev/null | head -1)
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
