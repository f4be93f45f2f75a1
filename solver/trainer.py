"""Route 2, `mrfnet train`: one pycaffe process (CPU or one GPU) that runs the paper's Adam
schedule step by step and does what `caffe train` cannot:

- sets the loss-weight group of the moment on the Python loss layer (set_loss_weights);
- validates with PSNR/SSIM (layers.metrics, on uint8 images) every N iterations through a deploy
  net sharing the train net's weights, and keeps the best model (best.caffemodel);
- logs JSON lines, draws the loss curves (loss.png), shows a progress bar with it/s and ETA;
- resumes from a .solverstate (iteration, Adam state, lr and loss-weight group follow from it);
- on SIGINT/SIGTERM or a wall-time budget snapshots and stops cleanly; on a NaN/inf loss stops
  and names the last good snapshot.

`train(config)` is the Python API (the demo calls it); solver.command is the CLI around it.
"""
import json
import math
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

import caffe
from caffe.proto import caffe_pb2

from layers import metrics
from layers.caffe_layers import scale_loss_blobs, scale_terms, set_loss_weights
from layers.errors import LayerParamError
from layers.loss_groups import active_group, group_starts
from prototxt_gen.topology import (DEFAULT_PATHS, DEFAULT_VARIANT, TopologyError,
                                   check_paths, check_variant, total_stride)
from solver import plan as PL
from solver import runfiles as RF
from solver import schedule as S
from solver import solver_file as SF
from solver.data import count_entries, load_pairs
from solver.fresh_data import FreshBlurBatches, load_photos
from solver import parallel as DP
from inference.errors import InferenceError
from inference.weights import copy_checked
from solver.errors import MissingInputError, RunConfigError, TrainingDiverged
from solver.plot import plot_log
from mrfnet.caffe_memory import reuse_blob_memory
from mrfnet.progress import ProgressBar
from solver.runlog import RunLog, read_log, truncate_after

# Defaults of every option (None = derived from the schedule / the paper).
DEFAULTS = {
    "variant": DEFAULT_VARIANT, "paths": DEFAULT_PATHS, "train_db": None, "val": None,
    "train_images": None, "exclude": None, "weights": None,
    "out": None, "iters": None, "epochs": None, "dataset": "gopro",
    "batch": S.PAPER["total_batch"], "crop": S.PAPER["crop"], "base_lr": S.PAPER["base_lr"],
    "stepsize": None, "snapshot_every": None, "val_every": None, "seed": 0,
    "loss_groups": None, "val_max": 16, "val_max_side": None, "keep_snapshots": 3,
    "gpu": None, "max_seconds": None, "resume": None, "progress": True, "workers": None,
    "lr_policy": "step", "clip_gradients": None, "loss": "l2", "augment": None,
}
# Options that only steer this session; everything else is the run's identity in run.json.
SESSION_KEYS = ("resume", "max_seconds", "progress", "gpu", "workers")
# Changing these on resume would make the saved solver state meaningless.
FIXED_ON_RESUME = ("variant", "paths")
LOG_NAME, PNG_NAME, RUN_JSON = "train_log.jsonl", "loss.png", "run.json"
PLOT_EVERY_S = 30.0


# ----------------------------------------------------------------------------- configuration
def _latest_state(run_dir):
    states = list((Path(run_dir) / "snapshots").glob("*_iter_*.solverstate"))
    if not states:
        raise MissingInputError(f"--resume {run_dir}: no .solverstate in {run_dir}/snapshots")
    return max(states, key=lambda p: int(p.stem.rsplit("_iter_", 1)[1]))


def resolve_config(given):
    """(config dict, solverstate path or None): DEFAULTS <- run.json's config (on resume) <- the
    options given (None = not given). Raises RunConfigError/MissingInputError with the fix."""
    given = {k: v for k, v in dict(given).items() if v is not None}
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise RunConfigError(f"unknown training option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    state, saved = None, {}
    if given.get("resume"):
        r = Path(given["resume"]).resolve()
        if r.is_dir():
            state = _latest_state(r)
            run_dir = r
        elif r.suffix == ".solverstate" and r.exists():
            state = r
            run_dir = Path(given["out"]) if given.get("out") else r.parent.parent
        else:
            raise MissingInputError(f"--resume {r}: give a run directory or a .solverstate file")
        rj = run_dir / RUN_JSON
        if not rj.exists():
            raise MissingInputError(f"--resume: {rj} not found (was {run_dir} made by mrfnet train?)")
        saved = json.loads(rj.read_text())["config"]
        given.setdefault("out", str(run_dir))
        for k in FIXED_ON_RESUME:
            if k in given and given[k] != saved.get(k):
                raise RunConfigError(f"--{k} {given[k]} differs from the run being resumed "
                                     f"({saved.get(k)}); start a new --out instead")
    cfg = dict(DEFAULTS)
    cfg.update({k: v for k, v in saved.items() if k in DEFAULTS})
    cfg.update(given)
    if bool(cfg["train_db"]) == bool(cfg["train_images"]):
        raise RunConfigError("give --train-db (an LMDB or HDF5 made by `mrfnet convert`) or "
                             "--train-images (a folder of sharp photos, blurred on the fly), "
                             "one of the two" + (", not both" if cfg["train_db"] else ""))
    if cfg["augment"] and not cfg["train_images"]:
        raise RunConfigError("--augment applies to --train-images (samples rendered while "
                             "training); a --train-db holds its augmentation already")
    if cfg["exclude"] and not cfg["train_images"]:
        raise RunConfigError("--exclude applies to --train-images (with --train-db, leave the "
                             "images out when converting: `mrfnet convert --exclude`)")
    if state and given.get("weights"):
        raise RunConfigError("--weights starts a new run from a .caffemodel; --resume continues "
                             "one from its solver state: give one of the two")
    if not cfg["out"]:
        raise RunConfigError("--out is required (the run directory)")
    if cfg["iters"] is not None and cfg["epochs"] is not None:
        if "iters" in given and "epochs" not in given:
            cfg["epochs"] = None
        elif "epochs" in given and "iters" not in given:
            cfg["iters"] = None
        else:
            raise RunConfigError("give --iters or --epochs, not both")
    try:
        check_variant(cfg["variant"])
        check_paths(cfg["paths"])
    except TopologyError as exc:
        raise RunConfigError(str(exc)) from None
    cfg["out"] = str(Path(cfg["out"]).resolve())
    for key in ("train_db", "val", "train_images", "exclude", "weights"):
        if cfg[key]:
            if not Path(cfg[key]).exists():
                raise MissingInputError(f"--{key.replace('_', '-')} {cfg[key]}: not found")
            cfg[key] = str(Path(cfg[key]).resolve())
    # keep the groups themselves (not a file name) so a resumed run uses exactly the same ones
    cfg["loss_groups"] = PL.load_groups(cfg["loss_groups"], cfg["paths"])
    return cfg, state


def _versions():
    def git_head():
        try:
            return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                                  capture_output=True, text=True, timeout=5).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            return None
    import google.protobuf
    return {"python": platform.python_version(), "numpy": np.__version__,
            "caffe": getattr(caffe, "__version__", None), "protobuf": google.protobuf.__version__,
            "git": git_head(), "platform": platform.platform()}


def _check_gpu(gpu):
    """Fail early and clearly when this Caffe has no GPU support (pycaffe would abort later)."""
    caffe_cmd = Path(sys.executable).parent / "caffe"
    try:
        ok = subprocess.run([str(caffe_cmd), "device_query", "-gpu", str(gpu)], capture_output=True,
                            timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    if not ok:
        raise RunConfigError(f"--gpu {gpu}: this Caffe cannot use GPU {gpu} (`caffe device_query "
                             f"-gpu {gpu}` failed; a CPU_ONLY build trains on the CPU: drop --gpu)")


class NonFiniteLoss(Exception):
    """Raised inside the loss layer's forward, so Caffe never runs the backward pass of a NaN
    forward (Caffe's max pooling stores index -1 for an all-NaN window and its backward then
    writes before the diff array: heap corruption)."""

    def __init__(self, value):
        super().__init__(value)
        self.value = value


def _guard_loss(layer):
    """Wrap the Python loss layer's forward (on this instance only) with a finiteness check."""
    original = layer.forward

    def forward(bottom, top):
        original(bottom, top)
        value = float(top[0].data.flat[0])
        if not math.isfinite(value):
            raise NonFiniteLoss(value)

    layer.forward = forward


# ----------------------------------------------------------------------------- validation
class Validator:
    """PSNR/SSIM of the current weights on held-out pairs, through a deploy net that shares the
    train net's parameter blobs (no copy: it always sees the latest weights)."""

    def __init__(self, samples, deploy_path, train_net, batch, max_pixels):
        self.samples = samples
        self.batch = max(1, batch)
        self.net = caffe.Net(str(deploy_path), caffe.TEST)
        missing = [n for n in self.net.params if n not in train_net.params]
        if missing:
            raise RunConfigError(f"deploy net layers {missing} have no counterpart in the train net")
        self.net.share_with(train_net)
        reuse_blob_memory(self.net)  # only predict_deblur is read: about a quarter of the memory
        groups = {}
        for blur, sharp in samples:
            groups.setdefault(blur.shape, []).append((blur, sharp))
        # at most `batch` images and about the train batch's pixels per forward pass, so
        # full-size validation images do not need more memory than training
        self.chunks = []
        for shape, g in groups.items():
            n = max(1, min(self.batch, max_pixels // (shape[0] * shape[1])))
            self.chunks += [g[i:i + n] for i in range(0, len(g), n)]
        self.input_metrics = self._score(lambda x: x)

    def _score(self, predict):
        psnr_sum = ssim_sum = 0.0
        for chunk in self.chunks:
            x = np.stack([b.transpose(2, 0, 1) for b, _ in chunk]).astype(np.float32) / 255.0
            y = np.stack([s.transpose(2, 0, 1) for _, s in chunk]).astype(np.float32) / 255.0
            p, s = metrics.batch_metrics(predict(x), y, bgr=True)
            psnr_sum += p * len(chunk)
            ssim_sum += s * len(chunk)
        n = len(self.samples)
        return psnr_sum / n, ssim_sum / n

    def _forward(self, x):
        if self.net.blobs["data"].data.shape != x.shape:
            self.net.blobs["data"].reshape(*x.shape)
            self.net.reshape()  # blob sizes known before the forward: pooled buffers fit them
        self.net.blobs["data"].data[...] = x
        self.net.forward()
        return self.net.blobs["predict_deblur"].data.copy()

    def __call__(self):
        return self._score(self._forward)


# ----------------------------------------------------------------------------- the run
class _Stop:
    """Signal handler state: the first SIGINT/SIGTERM asks for a clean stop between steps,
    a second SIGINT aborts at once (KeyboardInterrupt)."""

    def __init__(self):
        self.signum = None
        self._old = {}

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def install(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def restore(self):
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}


class Run:
    """One training session in a run directory (fresh or resumed)."""

    def __init__(self, cfg, state, argv=None, callback=None):
        self.cfg, self.state = cfg, state
        self.callback = callback
        self.dir = Path(cfg["out"])
        self.snap_dir = self.dir / "snapshots"
        self.snap_dir.mkdir(parents=True, exist_ok=True)
        self.prefix = self.snap_dir / f"{cfg['variant']}_p{cfg['paths']}"
        self.argv = argv
        self.t0 = time.monotonic()
        self.cpu0 = time.process_time()   # CPU seconds of all threads, logged as "cpu"

    # --- files -------------------------------------------------------------------------------
    def prepare(self):
        cfg = self.cfg
        self.fresh = None
        self.workers = self._workers()
        self.start_iter = self._state_iter()
        share = cfg["batch"] // self.workers
        if cfg["train_images"]:
            RF.check_net_crop(cfg["crop"], cfg["paths"])
            self.bar.message(f"mrfnet train: loading the photos of {cfg['train_images']} "
                             f"(resized to 256x256 once; blurred afresh for every sample)")
            names, photos = load_photos(cfg["train_images"], exclude=cfg["exclude"],
                                        min_side=cfg["crop"], stream=self.stream)
            self.fresh = FreshBlurBatches(photos, cfg["crop"], share, seed=cfg["seed"],
                                          start=self.start_iter, augment=cfg["augment"])
            num_train = len(names)
        else:
            RF.check_crop(cfg["train_db"], cfg["crop"], cfg["paths"])
            num_train = count_entries(cfg["train_db"])
        self.val_samples = []
        if cfg["val"]:
            self.val_samples = load_pairs(cfg["val"], limit=cfg["val_max"],
                                          multiple=total_stride(cfg["paths"]),
                                          max_side=cfg["val_max_side"])
        self.sched = PL.make_schedule(
            num_train, total_batch=cfg["batch"], gpus=1, crop=cfg["crop"],
            epochs=cfg["epochs"], iters=cfg["iters"], dataset=cfg["dataset"],
            base_lr=cfg["base_lr"], stepsize=cfg["stepsize"],
            snapshot_every=cfg["snapshot_every"], val_size=len(self.val_samples),
            val_batch=cfg["batch"], val_every=cfg["val_every"], lr_policy=cfg["lr_policy"])
        self.groups = cfg["loss_groups"]
        self.max_iter = int(self.sched["max_iter"])
        old = self.dir / RUN_JSON
        if self.state and old.exists():
            before = json.loads(old.read_text()).get("schedule", {}).get("max_iter")
            if before is not None and before != self.max_iter:
                starts = group_starts(self.groups, self.max_iter)
                self.bar.message(f"note: max_iter changes from {before} to {self.max_iter} on "
                                 f"resume; loss-weight groups now switch at iterations {starts}")
        self.val_every = int(self.sched["test_interval"] or 0)
        self.snapshot_every = int(self.sched["snapshot"])
        header = [f"generated by `mrfnet train` for {cfg['variant']} P={cfg['paths']}, crop "
                  f"{cfg['crop']}, batch {cfg['batch']}"]
        if self.fresh:
            header.append(f"data: Input blobs fed by mrfnet train with {len(self.fresh)} photos of "
                          f"{cfg['train_images']}, blurred afresh for every sample")
        self.train_net_path = RF.write_train_net(
            self.dir / "train.prototxt", cfg["variant"], cfg["paths"],
            None if self.fresh else cfg["train_db"], self.dir, cfg["crop"], cfg["batch"],
            "python", weights=self.groups[0]["weights"], header=header, penalty=cfg["loss"])
        h, w = self.val_samples[0][0].shape[:2] if self.val_samples else (cfg["crop"], cfg["crop"])
        self.deploy_path = RF.write_deploy_net(self.dir / "deploy.prototxt", cfg["variant"],
                                               cfg["paths"], h, w, header=header)
        params = SF.solver_params(self.sched, self.train_net_path, self.prefix,
                                  solver_mode="GPU" if cfg["gpu"] is not None else "CPU",
                                  random_seed=cfg["seed"], snapshot=0,
                                  clip_gradients=cfg["clip_gradients"])
        comments = ["generated by `mrfnet train`; snapshots are taken by mrfnet train every "
                    f"{self.snapshot_every} iterations (snapshot: 0 here), validation every "
                    f"{self.val_every or '-'} iterations, loss weights set per group while training"
                    ] + self.sched["explanation"]
        self.solver_path = SF.write_solver(self.dir / "solver.prototxt", params, comments)
        self.rank_nets = []
        if self.workers > 1:
            # the files above stay the whole-batch ones (for `caffe train`); the ranks of
            # --workers get their own nets, and rank 0 a solver that trains its net
            par = self.dir / "parallel"
            self.rank_nets = DP.write_rank_nets(self.train_net_path, par, self.workers)
            self.solver_path = SF.write_solver(
                par / "solver_rank0.prototxt", dict(params, train_net=str(self.rank_nets[0])),
                [f"rank 0 of `mrfnet train --workers {self.workers}`: the solver above, "
                 f"training its share ({share} of {cfg['batch']}) of every batch"])
        (self.dir / "loss_groups.json").write_text(json.dumps(self.groups, indent=1) + "\n")
        self._write_run_json()

    def _write_run_json(self):
        path = self.dir / RUN_JSON
        old = json.loads(path.read_text()) if path.exists() else {}
        sessions = old.get("sessions", [])
        sessions.append({"command": self.argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                         "resume_from": str(self.state) if self.state else None,
                         "max_seconds": self.cfg["max_seconds"], "gpu": self.cfg["gpu"]})
        saved = {k: v for k, v in self.cfg.items() if k not in SESSION_KEYS}
        if old.get("config") and self.state:
            changed = {k: (old["config"].get(k), v) for k, v in saved.items()
                       if old["config"].get(k) != v}
            if changed:
                sessions[-1]["changed_on_resume"] = changed
        doc = {"command": old.get("command", self.argv), "seed": self.cfg["seed"],
               "versions": _versions(), "config": saved,
               "schedule": {k: v for k, v in self.sched.items()}, "sessions": sessions}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        os.replace(tmp, path)

    def _workers(self):
        """Processes that share every batch (solver.parallel); one on a GPU."""
        cfg = self.cfg
        if cfg["workers"] is None:
            return DP.default_workers(cfg["batch"], cfg["gpu"])
        DP.check_workers(cfg["workers"], cfg["batch"])
        if cfg["gpu"] is not None and cfg["workers"] > 1:
            raise RunConfigError("--workers splits a batch across CPU processes; with --gpu "
                                 "train in one process (several GPUs: caffe train -gpu 0,1,...)")
        return cfg["workers"]

    def _start_workers(self):
        """Ranks 1..N-1 beside this process (rank 0), the cores shared out between them."""
        cfg = self.cfg
        fresh = None
        if self.fresh:
            fresh = {"images": cfg["train_images"], "exclude": cfg["exclude"], "crop": cfg["crop"],
                     "batch": cfg["batch"] // self.workers, "seed": cfg["seed"],
                     "start": self.start_iter, "augment": cfg["augment"]}
        specs = [DP.worker_spec(self.net, self.rank_nets[r], cfg["seed"], fresh)
                 for r in range(1, self.workers)]
        self.group = DP.WorkerGroup(self.solver, specs)
        self.bar.message(f"mrfnet train: {self.workers} processes of {self.group.threads} "
                         f"thread(s), {cfg['batch'] // self.workers} samples each per batch "
                         f"(--workers)")

    # --- caffe -------------------------------------------------------------------------------
    def build_solver(self):
        if self.cfg["gpu"] is not None:
            _check_gpu(self.cfg["gpu"])
            caffe.set_device(int(self.cfg["gpu"]))
            caffe.set_mode_gpu()
        else:
            caffe.set_mode_cpu()
        np.random.seed(self.cfg["seed"])
        self.solver = caffe.get_solver(self.solver_path)
        self.net = self.solver.net
        try:
            _, layer, self.loss_top, self.scale_blobs = scale_loss_blobs(self.net)
        except LayerParamError as exc:
            raise RunConfigError(f"{self.train_net_path}: {exc}") from None
        _guard_loss(layer)
        if self.state:
            self.solver.restore(str(self._relocated_state(self.state)))
        elif self.cfg["weights"]:
            try:
                copy_checked(self.net, self.cfg["weights"], self.train_net_path)
            except InferenceError as exc:
                raise RunConfigError(f"--weights: {exc}") from None
            self.bar.message(f"starting from the weights {self.cfg['weights']}")
        self.group = None
        if self.workers > 1:
            self._start_workers()
        self.validator = None
        if self.val_samples:
            self.validator = Validator(self.val_samples, self.deploy_path, self.net,
                                       self.cfg["batch"],
                                       self.cfg["batch"] * self.cfg["crop"] ** 2)

    def _state_iter(self):
        """The iteration of the solver state being resumed (0 for a fresh run)."""
        if not self.state:
            return 0
        st = caffe_pb2.SolverState()
        st.ParseFromString(Path(self.state).read_bytes())
        return int(st.iter)

    def _relocated_state(self, state):
        """A .solverstate whose learned_net points at the .caffemodel beside it, so a moved or
        copied run directory still resumes (Caffe stores the path as it was written)."""
        st = caffe_pb2.SolverState()
        st.ParseFromString(Path(state).read_bytes())
        beside = Path(state).with_suffix(".caffemodel")
        if not beside.exists():
            if st.learned_net and Path(st.learned_net).exists():
                return state
            raise MissingInputError(f"--resume {state}: its weights {beside.name} are missing")
        if st.learned_net == str(beside.resolve()):
            return state
        st.learned_net = str(beside.resolve())
        tmp = self.snap_dir / ".resume.solverstate"
        tmp.write_bytes(st.SerializeToString())
        return tmp

    # --- bookkeeping -------------------------------------------------------------------------
    def lr(self, it):
        return S.lr_at(it, self.sched["base_lr"], self.sched["gamma"], self.sched["stepsize"],
                       self.sched["lr_policy"], self.max_iter, self.sched["power"])

    def group_at(self, it):
        idx = active_group(self.groups, it / self.max_iter)
        return idx, list(self.groups[idx]["weights"])

    def snapshot(self, it):
        self.solver.snapshot()
        model = Path(f"{self.prefix}_iter_{it}.caffemodel")
        self.last_snapshot = (it, model.with_suffix(".solverstate"))
        keep = self.cfg["keep_snapshots"]
        if keep and keep > 0:
            olds = sorted(self._snapshot_iters())[:-keep]
            for old in olds:
                for ext in (".caffemodel", ".solverstate"):
                    Path(f"{self.prefix}_iter_{old}{ext}").unlink(missing_ok=True)
        return self.last_snapshot[1]

    def _snapshot_iters(self):
        return {int(p.stem.rsplit("_iter_", 1)[1])
                for p in self.snap_dir.glob(f"{self.prefix.name}_iter_*.solverstate")}

    def good_snapshot(self, bad_weights_iter):
        """Latest snapshot older than the weights that gave the non-finite loss (the weights
        after `bad_weights_iter` updates); each older one gave a finite loss afterwards."""
        good = [i for i in self._snapshot_iters() if i < bad_weights_iter]
        return Path(f"{self.prefix}_iter_{max(good)}.solverstate") if good else None

    def validate(self, it):
        t = time.monotonic()
        psnr, ssim = self.validator()
        dt = time.monotonic() - t
        self.val_seconds = dt
        best = self.best is None or psnr > self.best["psnr"] or (
            psnr == self.best["psnr"] and ssim > self.best["ssim"])
        rec = {"iteration": it, "psnr": psnr, "ssim": ssim, "best": best, "seconds": dt,
               "samples": len(self.val_samples)}
        if it == 0 or not self.val_done:
            rec["input_psnr"], rec["input_ssim"] = self.validator.input_metrics
        if best:
            self.net.save(str(self.dir / "best.caffemodel"))
            self.best = {"iteration": it, "psnr": psnr, "ssim": ssim,
                         "model": str(self.dir / "best.caffemodel")}
            (self.dir / "best.json").write_text(json.dumps(self.best, indent=1) + "\n")
        self.log.write("val", **rec)
        self.last_val_iter = it
        self.val_done = True
        return rec

    def plot(self, force=False):
        """Redraw loss.png; at most every PLOT_EVERY_S seconds unless forced (it takes ~1 s)."""
        now = time.monotonic()
        if not force and now - getattr(self, "_last_plot", -1e9) < PLOT_EVERY_S:
            return
        self._last_plot = now
        try:
            plot_log(self.dir / LOG_NAME, self.dir / PNG_NAME,
                     iterations_per_epoch=self.sched["iterations_per_epoch"],
                     group_starts=group_starts(self.groups, self.max_iter),
                     title=f"{self.cfg['variant']} P={self.cfg['paths']}: training loss "
                           f"(cf. paper Fig. 5)")
        except Exception as exc:  # a plot must never kill a training run
            self.bar.message(f"warning: could not draw {PNG_NAME}: {exc}")

    # --- the loop ----------------------------------------------------------------------------
    def train(self):
        cfg = self.cfg
        stop = _Stop().install()
        self.stream = sys.stderr if cfg["progress"] else open(os.devnull, "w")
        self.bar = ProgressBar(1, stream=self.stream)
        try:
            self.prepare()
            self.build_solver()
            return self._loop(stop)
        finally:
            stop.restore()
            self.release()

    def release(self):
        """Drop every reference to the Caffe objects, so they are freed even while an exception
        (and its traceback, which holds this Run) lives on. This Caffe's Data layers share one
        reader thread per (layer name, source) in a process; a stale train net would otherwise
        starve the next net reading the same database (a hang, not an error)."""
        if getattr(self, "fresh", None):
            self.fresh.close()
        if getattr(self, "group", None):
            self.group.close()
        self.solver = self.net = self.validator = self.fresh = self.group = None
        if self.stream is not sys.stderr:
            self.stream.close()
        import gc
        gc.collect()

    def _loop(self, stop):
        cfg = self.cfg
        it = int(self.solver.iter)
        log_path = self.dir / LOG_NAME
        if self.state:
            truncate_after(str(log_path), it)
        self.log = RunLog(log_path)
        self.last_snapshot = None
        best_json = self.dir / "best.json"
        self.best = json.loads(best_json.read_text()) if (self.state and best_json.exists()) else None
        self.val_done, self.last_val_iter, self.val_seconds = False, None, 0.0
        self.bar = ProgressBar(self.max_iter, start=it, stream=self.stream)
        self.log.write("event", event="resume" if self.state else "start", iteration=it,
                       max_iter=self.max_iter, time=time.time(),
                       state=str(self.state) if self.state else None)
        self.bar.message(f"mrfnet train: {cfg['variant']} P={cfg['paths']} -> {self.dir} "
                         f"({'resumed at' if self.state else 'from'} iteration {it} of "
                         f"{self.max_iter}, lr {self.lr(it):g})")
        step_times = []
        status, weights, group = "done", None, None
        try:
            if self.validator and not self.state:
                self.validate(it)
                self.plot()
            while it < self.max_iter:
                if stop.signum is not None:
                    status = "interrupted"
                    break
                if cfg["max_seconds"] is not None:
                    est = float(np.mean(step_times[-10:])) if step_times else 0.0
                    reserve = self.val_seconds if self.validator else 0.0
                    if time.monotonic() - self.t0 + est + reserve > cfg["max_seconds"]:
                        status = "budget"
                        break
                g, w = self.group_at(it)
                if w != weights:
                    set_loss_weights(self.net, w)
                    if self.group:
                        self.group.set_loss_weights(w)
                    if weights is not None:
                        self.bar.message(f"iteration {it}: loss-weight group {g + 1}, weights {w}")
                        self.log.write("event", event="group", iteration=it, group=g + 1, weights=w)
                    weights, group = w, g
                lr = self.lr(it)
                t = time.perf_counter()
                if self.fresh:
                    data, label = self.fresh.next()
                    self.net.blobs["data"].data[...] = data
                    self.net.blobs["label"].data[...] = label
                try:
                    self.solver.step(1)
                except NonFiniteLoss as exc:
                    self.log.write("train", iteration=it + 1, lr=lr, loss=exc.value,
                                   weights=weights, group=group + 1)
                    self._diverged(it, exc.value, lr, weights)
                except DP.WorkerError as exc:
                    self._worker_failed(it, exc)
                dt = time.perf_counter() - t
                step_times.append(dt)
                it = int(self.solver.iter)
                loss = float(self.net.blobs[self.loss_top].data.flat[0])
                terms = scale_terms(self.net, self.scale_blobs)
                if self.group:
                    loss, terms = self.group.mean_outputs(loss, terms)
                self.log.write("train", iteration=it, lr=lr, loss=loss, **terms, weights=weights,
                               group=group + 1, seconds=dt, elapsed=time.monotonic() - self.t0,
                               cpu=time.process_time() - self.cpu0)
                if not (math.isfinite(loss) and all(math.isfinite(v) for v in terms.values())):
                    self._diverged(it - 1, loss, lr, weights)
                self.bar.update(it, loss=loss, lr=lr,
                                psnr=self.best["psnr"] if self.best else None)
                if self.callback:
                    self.callback({"iteration": it, "loss": loss, "lr": lr, **terms,
                                   "solver": self.solver, "net": self.net, "run_dir": str(self.dir)})
                if self.snapshot_every and it % self.snapshot_every == 0 and it < self.max_iter:
                    self.snapshot(it)
                if self.validator and self.val_every and it % self.val_every == 0:
                    self.validate(it)
                    self.plot()
        except KeyboardInterrupt:
            status = "aborted"
            raise
        finally:
            self.bar.close()
            if status == "aborted":
                self.log.write("event", event="aborted", iteration=it)
                self.log.close()
        return self._finish(status, it, stop, step_times)

    def _worker_failed(self, it, exc):
        """A --workers process died in a step: Caffe had not applied that step (the gradients
        come before the update), so the weights and Adam state of iteration `it` are whole and
        are snapshotted before the error goes up."""
        self.bar.close()
        state = self.snapshot(it)
        self.log.write("event", event="worker_failed", iteration=it, snapshot=str(state))
        self.plot(force=True)
        self.log.close()
        raise DP.WorkerError(f"{exc}\nThe run is saved at iteration {it} ({state}); continue "
                             f"with `mrfnet train --resume {self.dir}` (add --workers 1 to train "
                             f"in one process)") from None

    def _diverged(self, weights_iter, loss, lr, weights):
        """Stop on a NaN/inf loss computed with the weights after `weights_iter` updates."""
        self.bar.close()
        it = weights_iter + 1
        good = self.good_snapshot(weights_iter)
        if good:
            where = (f"Last good snapshot: {good} (iteration {good.stem.rsplit('_iter_', 1)[1]}); "
                     f"resume from it with `mrfnet train --resume {good} --base-lr <smaller>`")
        else:
            where = (f"No good snapshot was written before it (snapshots every "
                     f"{self.snapshot_every} iterations); start again with a smaller --base-lr")
        if self.best:
            where += f"; best validated model so far: {self.best['model']} (iteration {self.best['iteration']})"
        msg = (f"training diverged: the loss is {loss} at iteration {it} (lr {lr:g}, loss weights "
               f"{weights}); stopped without writing a snapshot. {where}")
        self.log.write("event", event="diverged", iteration=it, loss=loss, lr=lr,
                       good_snapshot=str(good) if good else None)
        self.plot(force=True)
        self.log.close()
        raise TrainingDiverged(msg)

    def _finish(self, status, it, stop, step_times):
        last_snap = max(self._snapshot_iters(), default=None)
        state = (Path(f"{self.prefix}_iter_{it}.solverstate") if last_snap == it
                 else self.snapshot(it))
        if status in ("done", "budget") and self.validator and self.last_val_iter != it:
            self.validate(it)
        final = None
        if status in ("done", "budget"):
            final = self.dir / "final.caffemodel"
            self.net.save(str(final))
        signame = signal.Signals(stop.signum).name if stop.signum is not None else None
        self.log.write("event", event=status, iteration=it, snapshot=str(state), signal=signame,
                       time=time.time())
        self.plot(force=True)
        self.log.close()
        summary = {
            "status": status, "signal": signame, "run_dir": str(self.dir), "iterations": it,
            "max_iter": self.max_iter, "seconds": time.monotonic() - self.t0,
            "steps_this_session": len(step_times),
            "seconds_per_iter": float(np.mean(step_times)) if step_times else None,
            "lr": self.lr(max(0, it - 1)), "last_snapshot": str(state),
            "best": self.best, "best_model": self.best["model"] if self.best else None,
            "final_model": str(final) if final else None, "log": str(self.dir / LOG_NAME),
            "loss_png": str(self.dir / PNG_NAME), "deploy": str(self.deploy_path),
            "schedule": {k: v for k, v in self.sched.items() if k != "explanation"},
        }
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        return summary


def train(config, argv=None, callback=None):
    """Train per `config` (a dict of the DEFAULTS keys; None/missing = default) and return a
    summary dict (status "done", "budget" or "interrupted", iterations, best, final model, ...).

    callback(info) runs after every finite step with iteration, loss, lr, per-scale terms and
    the live solver/net (for live displays; it must not keep references past the call).
    Raises TrainingDiverged on a NaN/inf loss, RunConfigError/MissingInputError on bad input."""
    cfg, state = resolve_config(config)
    run = Run(cfg, state, argv=argv if argv is not None else ["python-api", "solver.trainer.train"],
              callback=callback)
    return run.train()


def read_train_log(run_dir):
    """The records of a run's train_log.jsonl (for the demo and reports)."""
    return read_log(str(Path(run_dir) / LOG_NAME))
