"""Route 2, `mrfnet train`: one pycaffe process (CPU or one GPU) that runs the paper's Adam
schedule step by step and does what `caffe train` cannot:

- sets the loss-weight group of the moment on the Python loss layer (set_loss_weights);
- validates with PSNR/SSIM every N iterations and keeps the best model (solver.validation);
- logs JSON lines, draws the loss curves (loss.png), shows a progress bar with it/s and ETA;
- resumes from a .solverstate (iteration, Adam state, lr and loss-weight group follow from it);
- on SIGINT/SIGTERM or a wall-time budget snapshots and stops cleanly; on a NaN/inf loss stops
  and names the last good snapshot (solver.stopping, solver.snapshots).

This module is the session itself: its files and the loop. The options and run.json are
solver.run_config's, the snapshot files solver.snapshots', validation solver.validation's.
`train(config)` is the Python API (the demo calls it); `mrfnet train` is the command around it.
"""
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import caffe

from layers.caffe_layers import scale_loss_blobs, scale_terms, set_loss_weights
from layers.errors import LayerParamError
from layers.loss_groups import active_group, group_starts
from prototxt_gen.topology import total_stride
from solver import plan as PL
from solver import runfiles as RF
from solver import schedule as S
from solver import solver_file as SF
from solver.data import count_entries, load_pairs
from solver.fresh_data import FreshBlurBatches, load_photos
from solver import parallel as DP
from inference.errors import InferenceError
from inference.weights import copy_checked
from solver.errors import RunConfigError, TrainingDiverged
from solver.plot import plot_log
from solver.run_config import resolve_config, saved_max_iter, write_run_json
from solver.snapshots import Snapshots, state_iter
from solver.stopping import NonFiniteLoss, StopSignal, guard_loss
from solver.validation import Validation, Validator
from mrfnet.progress import ProgressBar
from solver.runlog import RunLog, read_log, truncate_after

LOG_NAME, PNG_NAME = "train_log.jsonl", "loss.png"
PLOT_EVERY_S = 30.0


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


class Run:
    """One training session in a run directory (fresh or resumed)."""

    def __init__(self, cfg, state, argv=None, callback=None):
        self.cfg, self.state = cfg, state
        self.callback = callback
        self.dir = Path(cfg["out"])
        self.snaps = Snapshots(self.dir, cfg["variant"], cfg["paths"], cfg["keep_snapshots"])
        self.argv = argv
        self.t0 = time.monotonic()
        self.cpu0 = time.process_time()   # CPU seconds of all threads, logged as "cpu"

    # --- the session's data and files ---------------------------------------------------------
    def prepare(self):
        """Data sources, schedule, and the run's files (nets, solver, loss groups, run.json)."""
        cfg = self.cfg
        self.workers = self._workers()
        self.start_iter = state_iter(self.state)
        num_train = self._training_data()
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
        before = saved_max_iter(self.dir) if self.state else None
        if before is not None and before != self.max_iter:
            starts = group_starts(self.groups, self.max_iter)
            self.bar.message(f"note: max_iter changes from {before} to {self.max_iter} on "
                             f"resume; loss-weight groups now switch at iterations {starts}")
        self.val_every = int(self.sched["test_interval"] or 0)
        self.snapshot_every = int(self.sched["snapshot"])
        self._write_nets_and_solver()
        (self.dir / "loss_groups.json").write_text(json.dumps(self.groups, indent=1) + "\n")
        write_run_json(self.dir, cfg, self.sched, self.state, self.argv,
                       caffe_version=getattr(caffe, "__version__", None))

    def _training_data(self):
        """Check the training source; photos blurred on the fly are loaded (self.fresh). The
        number of training samples (photos or database entries)."""
        cfg = self.cfg
        self.fresh = None
        if not cfg["train_images"]:
            RF.check_crop(cfg["train_db"], cfg["crop"], cfg["paths"])
            return count_entries(cfg["train_db"])
        RF.check_net_crop(cfg["crop"], cfg["paths"])
        self.bar.message(f"mrfnet train: loading the photos of {cfg['train_images']} "
                         f"(resized to 256x256 once; blurred afresh for every sample)")
        names, photos = load_photos(cfg["train_images"], exclude=cfg["exclude"],
                                    min_side=cfg["crop"], stream=self.stream)
        self.fresh = FreshBlurBatches(photos, cfg["crop"], cfg["batch"] // self.workers,
                                      seed=cfg["seed"], start=self.start_iter,
                                      augment=cfg["augment"])
        return len(names)

    def _write_nets_and_solver(self):
        """train.prototxt, deploy.prototxt, solver.prototxt (and the --workers ranks' nets)."""
        cfg = self.cfg
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
        params = SF.solver_params(self.sched, self.train_net_path, self.snaps.prefix,
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
                 f"training its share ({cfg['batch'] // self.workers} of {cfg['batch']}) of "
                 f"every batch"])

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
        guard_loss(layer)
        if self.state:
            self.solver.restore(str(self.snaps.relocated(self.state)))
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

    # --- bookkeeping -------------------------------------------------------------------------
    def lr(self, it):
        return S.lr_at(it, self.sched["base_lr"], self.sched["gamma"], self.sched["stepsize"],
                       self.sched["lr_policy"], self.max_iter, self.sched["power"])

    def group_at(self, it):
        idx = active_group(self.groups, it / self.max_iter)
        return idx, list(self.groups[idx]["weights"])

    def validate(self, it):
        rec = self.val(it, self.net)
        self.plot()
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
        stop = StopSignal().install()
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
        if getattr(self, "val", None):
            self.val.validator = None
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
        self.val = Validation(self.validator, self.dir, self.log, resumed=bool(self.state))
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
            while it < self.max_iter:
                if stop.signum is not None:
                    status = "interrupted"
                    break
                if self._over_budget(step_times):
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
                best = self.val.best
                self.bar.update(it, loss=loss, lr=lr, psnr=best["psnr"] if best else None)
                if self.callback:
                    self.callback({"iteration": it, "loss": loss, "lr": lr, **terms,
                                   "solver": self.solver, "net": self.net, "run_dir": str(self.dir)})
                if self.snapshot_every and it % self.snapshot_every == 0 and it < self.max_iter:
                    self.snaps.take(self.solver, it)
                if self.validator and self.val_every and it % self.val_every == 0:
                    self.validate(it)
        except KeyboardInterrupt:
            status = "aborted"
            raise
        finally:
            self.bar.close()
            if status == "aborted":
                self.log.write("event", event="aborted", iteration=it)
                self.log.close()
        return self._finish(status, it, stop, step_times)

    def _over_budget(self, step_times):
        """Would one more step (and the final validation) pass --max-seconds?"""
        if self.cfg["max_seconds"] is None:
            return False
        est = float(np.mean(step_times[-10:])) if step_times else 0.0
        reserve = self.val.seconds if self.validator else 0.0
        return time.monotonic() - self.t0 + est + reserve > self.cfg["max_seconds"]

    def _worker_failed(self, it, exc):
        """A --workers process died in a step: Caffe had not applied that step (the gradients
        come before the update), so the weights and Adam state of iteration `it` are whole and
        are snapshotted before the error goes up."""
        self.bar.close()
        state = self.snaps.take(self.solver, it)
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
        good = self.snaps.good_before(weights_iter)
        if good:
            where = (f"Last good snapshot: {good} (iteration {good.stem.rsplit('_iter_', 1)[1]}); "
                     f"resume from it with `mrfnet train --resume {good} --base-lr <smaller>`")
        else:
            where = (f"No good snapshot was written before it (snapshots every "
                     f"{self.snapshot_every} iterations); start again with a smaller --base-lr")
        best = self.val.best
        if best:
            where += f"; best validated model so far: {best['model']} (iteration {best['iteration']})"
        msg = (f"training diverged: the loss is {loss} at iteration {it} (lr {lr:g}, loss weights "
               f"{weights}); stopped without writing a snapshot. {where}")
        self.log.write("event", event="diverged", iteration=it, loss=loss, lr=lr,
                       good_snapshot=str(good) if good else None)
        self.plot(force=True)
        self.log.close()
        raise TrainingDiverged(msg)

    def _finish(self, status, it, stop, step_times):
        last_snap = max(self.snaps.iterations(), default=None)
        state = self.snaps.state(it) if last_snap == it else self.snaps.take(self.solver, it)
        if status in ("done", "budget") and self.validator and self.val.last_iter != it:
            self.val(it, self.net)
        final = None
        if status in ("done", "budget"):
            final = self.dir / "final.caffemodel"
            self.net.save(str(final))
        self.log.write("event", event=status, iteration=it, snapshot=str(state), signal=stop.name,
                       time=time.time())
        self.plot(force=True)
        self.log.close()
        best = self.val.best
        summary = {
            "status": status, "signal": stop.name, "run_dir": str(self.dir), "iterations": it,
            "max_iter": self.max_iter, "seconds": time.monotonic() - self.t0,
            "steps_this_session": len(step_times),
            "seconds_per_iter": float(np.mean(step_times)) if step_times else None,
            "lr": self.lr(max(0, it - 1)), "last_snapshot": str(state),
            "best": best, "best_model": best["model"] if best else None,
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
