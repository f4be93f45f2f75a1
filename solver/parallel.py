"""Data-parallel training on the CPU: `mrfnet train --workers N` splits every batch across N
processes of one thread each.

Why processes: MRFNet's training GEMMs are small (32-256 rows, at most a few thousand columns at
the demo's 64x64 crops), so a second OpenBLAS/OpenMP thread inside one step adds little (1.17x
on this project's 2-core machine), while two one-thread processes side by side do about 1.7x the
work of one. Caffe has no CPU multi-process solver, so this module is one.

How a step goes (rank 0 is the trainer's own pycaffe Solver; ranks 1..N-1 are workers):
  on_start (Solver callback, before rank 0's forward): rank 0 writes its weights into a shared
      file-backed array and sends each worker "step" over its stdin;
  every rank: forward + backward on its share of the batch (same weights, other samples);
  on_gradients_ready (before Caffe's ApplyUpdate): rank 0 waits for the workers' gradients in
      the shared arrays and replaces its own by the mean of all ranks (each rank's loss is a
      mean over its share of the batch, so the mean of the shares' gradients is the full batch's
      gradient), then Caffe applies Adam (or any solver) once, as for one process.
Only rank 0 holds solver state (Adam moments, iteration, snapshots); workers are stateless and
receive the weights for every step, so they can never drift from rank 0.

Data: each rank draws its own share. With --train-images every rank renders fresh samples from
its own random stream; with an LMDB/HDF5 every rank's data layer reads the whole batch in the
same order (same seed) and keeps its slice of the batch (`partition_net`), so the batches are
exactly those of one process.
"""
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from mrfnet.caffe_log import quiet_caffe
from mrfnet.netfile import message_text, read_message
from solver.errors import RunConfigError

WORKER_MODULE = "solver.parallel"


class WorkerError(RuntimeError):
    """A worker process failed or stopped answering; the message carries its stderr tail."""


def check_workers(workers, batch):
    """The worker count must be positive and divide the batch (every rank gets an equal share,
    so the mean of the shares' gradients is the whole batch's gradient)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise RunConfigError(f"--workers must be a positive integer, got {workers!r}")
    if batch % workers:
        raise RunConfigError(f"--batch {batch} cannot be split evenly across --workers {workers}: "
                             f"choose a worker count that divides the batch (e.g. "
                             f"{max(d for d in range(1, workers + 1) if batch % d == 0)})")
    return workers


def cpu_cores():
    """Cores this process may run on (its affinity where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_workers(batch, gpu=None, cores=None):
    """One process per core on the CPU (at most the batch, and a divisor of it); 1 on a GPU."""
    if gpu is not None:
        return 1
    cores = cores or cpu_cores()
    return max(d for d in range(1, min(cores, batch) + 1) if batch % d == 0)


def partition_net(net_param, rank, parts):
    """A copy of a train NetParameter for rank `rank` of `parts`. Input blobs (fed by the
    trainer) get batch/parts rows. Data layers (LMDB, HDF5) keep reading whole batches in the
    same order in every rank; each of their tops is cut along the batch axis by a Slice layer,
    this rank keeping its slice and silencing the others."""
    from caffe.proto import caffe_pb2
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net_param)
    if parts == 1:
        return out
    layers = list(out.layer)
    sources = [l for l in layers if not l.bottom and l.top]
    if not sources:
        raise RunConfigError(f"net {out.name!r}: no data or Input layer to split across workers")
    renamed, new_layers = {}, []
    for layer in layers:
        if layer.type == "Input":
            for shape in layer.input_param.shape:
                if shape.dim[0] % parts:
                    raise RunConfigError(f"net {out.name!r}: batch {shape.dim[0]} cannot be "
                                         f"split into {parts} equal parts")
                shape.dim[0] //= parts
        for k, b in enumerate(layer.bottom):
            if b in renamed:
                layer.bottom[k] = renamed[b]
        new_layers.append(layer)
        if layer in sources and layer.type != "Input":
            for top in layer.top:
                names = [f"{top}_part{k}" for k in range(parts)]
                cut = caffe_pb2.LayerParameter(name=f"{top}_rank_slice", type="Slice")
                cut.bottom.append(top)
                cut.top.extend(names)
                cut.slice_param.axis = 0
                rest = caffe_pb2.LayerParameter(name=f"{top}_other_ranks", type="Silence")
                rest.bottom.extend(n for k, n in enumerate(names) if k != rank)
                new_layers += [cut, rest]
                renamed[top] = names[rank]
    del out.layer[:]
    out.layer.extend(new_layers)
    return out


def write_rank_net(train_net_path, out_path, rank, parts):
    """partition_net of a prototxt file, written to out_path (returns it)."""
    net = read_message(train_net_path)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(message_text(partition_net(net, rank, parts), [
        f"rank {rank} of {parts} of `mrfnet train --workers {parts}` (solver/parallel.py), "
        f"made from {Path(train_net_path).name}"]))
    return Path(out_path)


def write_rank_nets(train_net_path, folder, parts):
    """write_rank_net for every rank: folder/train_rank<r>.prototxt, rank 0 first."""
    return [write_rank_net(train_net_path, Path(folder) / f"train_rank{r}.prototxt", r, parts)
            for r in range(parts)]


def set_threads(n):
    """Threads of this process's OpenMP runtime (Caffe's loops and the OpenMP OpenBLAS follow
    omp_get_max_threads at every call); returns the previous value, or None without libgomp."""
    try:
        gomp = ctypes.CDLL("libgomp.so.1")
    except OSError:
        return None
    before = gomp.omp_get_max_threads()
    gomp.omp_set_num_threads(int(n))
    return before


def worker_spec(net, rank_net, seed, fresh=None):
    """What worker `rank_net` needs: its net file, the Caffe seed (data layers then read the
    same batches as rank 0), rank 0's loss blobs, and its fresh-data settings if any."""
    from layers.caffe_layers import scale_loss_blobs
    _, _, top, scales = scale_loss_blobs(net)
    return {"net": str(rank_net), "seed": int(seed), "loss_top": top, "scale_blobs": scales,
            "fresh": fresh}


def _param_blobs(net):
    return [b for blobs in net.params.values() for b in blobs]


class SharedArrays:
    """One float32 array per parameter blob, in a file mapped by every process (a folder in
    /dev/shm when it exists, so the pages never reach a disk)."""

    def __init__(self, path, shapes, create):
        self.path = Path(path)
        self.sizes = [int(np.prod(s)) for s in shapes]
        total = sum(self.sizes)
        if create:
            with open(self.path, "wb") as f:
                f.truncate(total * 4)
        self.flat = np.memmap(self.path, np.float32, "r+", shape=(total,))
        self.views, pos = [], 0
        for s, n in zip(shapes, self.sizes):
            self.views.append(self.flat[pos:pos + n].reshape(s))
            pos += n


class WorkerGroup:
    """Ranks 1..N-1 as subprocesses, attached to rank 0's solver by callbacks. The cores are
    shared out: every process, this one included (until close), runs `threads` threads
    (default cores // processes, at least 1)."""

    def __init__(self, solver, worker_specs, threads=None):
        self.threads = threads or max(1, cpu_cores() // (len(worker_specs) + 1))
        self.threads_before = set_threads(self.threads)
        self.solver, self.net = solver, solver.net
        self.blobs = _param_blobs(self.net)
        self.shapes = [tuple(b.data.shape) for b in self.blobs]
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self.tmp = tempfile.mkdtemp(prefix="mrfnet-workers-", dir=base)
        self.weights = SharedArrays(Path(self.tmp) / "weights", self.shapes, create=True)
        self.grads, self.procs = [], []
        self.loss_weights = None
        self.outputs = []
        root = str(Path(__file__).resolve().parents[1])  # the checkout: `python -m solver.parallel`
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads),
                   OPENBLAS_NUM_THREADS=str(self.threads),
                   GLOG_minloglevel=os.environ.get("GLOG_minloglevel", "2"),
                   PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
        try:
            for rank, spec in enumerate(worker_specs, start=1):
                grads = SharedArrays(Path(self.tmp) / f"grads{rank}", self.shapes, create=True)
                self.grads.append(grads)
                spec = dict(spec, rank=rank, weights=str(self.weights.path),
                            grads=str(grads.path), shapes=[list(s) for s in self.shapes])
                err = open(Path(self.tmp) / f"stderr{rank}", "w+")
                proc = subprocess.Popen([sys.executable, "-m", WORKER_MODULE], env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=err, text=True, bufsize=1)
                proc.err = err
                self.procs.append(proc)
                self._send(proc, spec)
            for proc in self.procs:
                self._receive(proc)  # "ready" once its net is built and matches ours
        except BaseException:
            self.close()
            raise
        solver.add_callback(self._on_start, self._on_gradients_ready)
        self.active = True

    def __len__(self):
        return len(self.procs) + 1

    # --- protocol ----------------------------------------------------------------------------
    def _send(self, proc, msg):
        try:
            proc.stdin.write(json.dumps(msg) + "\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._fail(proc, "stopped before it was sent a step")

    def _receive(self, proc):
        line = proc.stdout.readline()
        if not line:
            self._fail(proc, "stopped")
        msg = json.loads(line)
        if "error" in msg:
            self._fail(proc, msg["error"])
        return msg

    def _fail(self, proc, what):
        rank = self.procs.index(proc) + 1
        proc.err.flush()
        proc.err.seek(0)
        tail = "\n".join(proc.err.read().strip().splitlines()[-12:])
        raise WorkerError(f"training worker {rank} {what}" + (f":\n{tail}" if tail else ""))

    # --- solver callbacks --------------------------------------------------------------------
    def set_loss_weights(self, weights):
        """Sent with the next step: the per-scale loss weights of the moment."""
        self.loss_weights = list(weights)

    def _on_start(self):
        if not self.active:
            return
        for view, blob in zip(self.weights.views, self.blobs):
            view[...] = blob.data
        msg = {"cmd": "step"}
        if self.loss_weights is not None:
            msg["loss_weights"] = self.loss_weights
        for proc in self.procs:
            self._send(proc, msg)

    def _on_gradients_ready(self):
        if not self.active:
            return
        self.outputs = [self._receive(proc) for proc in self.procs]
        scale = np.float32(1.0 / len(self))
        for k, blob in enumerate(self.blobs):
            diff = blob.diff
            for grads in self.grads:
                diff += grads.views[k]
            diff *= scale

    def mean_outputs(self, loss, terms):
        """Rank 0's loss and per-scale terms averaged with the workers' of the last step."""
        n = len(self)
        loss = (loss + sum(o["loss"] for o in self.outputs)) / n
        terms = {k: (v + sum(o["terms"][k] for o in self.outputs)) / n for k, v in terms.items()}
        return loss, terms

    def close(self):
        """Stop the workers (politely, then firmly) and remove the shared files; returns the
        peak memory (MB) each worker reported when it stopped."""
        self.active = False
        rss = []
        for proc in self.procs:
            try:
                proc.stdin.write(json.dumps({"cmd": "stop"}) + "\n")
                proc.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
        for proc in self.procs:
            try:
                for line in proc.stdout:   # a step reply left unread (a failed step), then this
                    msg = json.loads(line)
                    if "peak_rss_mb" in msg:
                        rss.append(msg["peak_rss_mb"])
                proc.wait(timeout=20)
            except (subprocess.TimeoutExpired, ValueError, OSError):
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.err.close()
        self.procs = []
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.threads_before is not None:
            set_threads(self.threads_before)
            self.threads_before = None
        # The solver keeps our callbacks (in C++, out of sight of Python's garbage collector):
        # holding the solver here would keep it, and its data layers' readers, alive for good.
        self.solver = self.net = self.blobs = self.weights = None
        self.grads = []
        return rss


# ------------------------------------------------------------------------------ worker side
def _worker(spec, reply):
    import caffe
    from layers.caffe_layers import scale_terms, set_loss_weights
    caffe.set_mode_cpu()
    caffe.set_random_seed(int(spec["seed"]))
    net = caffe.Net(spec["net"], caffe.TRAIN)
    blobs = _param_blobs(net)
    shapes = [list(b.data.shape) for b in blobs]
    if shapes != spec["shapes"]:
        raise RuntimeError(f"{spec['net']}: its parameter shapes differ from rank 0's")
    weights = SharedArrays(spec["weights"], [tuple(s) for s in shapes], create=False)
    grads = SharedArrays(spec["grads"], [tuple(s) for s in shapes], create=False)
    fresh = None
    if spec.get("fresh"):
        from solver.fresh_data import FreshBlurBatches, load_photos
        f = spec["fresh"]
        with open(os.devnull, "w") as quiet:
            _, photos = load_photos(f["images"], exclude=f["exclude"], min_side=f["crop"],
                                    stream=quiet)
        fresh = FreshBlurBatches(photos, f["crop"], f["batch"], seed=f["seed"], start=f["start"],
                                 augment=f.get("augment"),
                                 stream=spec["rank"])
    loss_top = spec["loss_top"]
    scale_blobs = spec["scale_blobs"]
    last = len(net.layers) - 1
    reply({"ready": True})
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "stop":
            break
        if "loss_weights" in msg:
            set_loss_weights(net, msg["loss_weights"])
        for view, blob in zip(weights.views, blobs):
            blob.data[...] = view
        if fresh:
            data, label = fresh.next()
            net.blobs["data"].data[...] = data
            net.blobs["label"].data[...] = label
        net.clear_param_diffs()
        net._forward(0, last)
        net._backward(last, 0)
        for view, blob in zip(grads.views, blobs):
            view[...] = blob.diff
        reply({"loss": float(net.blobs[loss_top].data.flat[0]),
               "terms": scale_terms(net, scale_blobs)})
    if fresh:
        fresh.close()
    import resource
    reply({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0})


def main():
    quiet_caffe()
    # Ctrl-C in a terminal (SIGINT to the whole process group) or a SIGTERM to the group must
    # reach only rank 0, which finishes the step, snapshots and then stops the workers; a worker
    # whose rank 0 is gone sees its stdin close and exits.
    import signal
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    out = sys.stdout
    sys.stdout = sys.stderr  # anything Caffe or a layer prints must not enter the protocol

    def reply(msg):
        out.write(json.dumps(msg) + "\n")
        out.flush()

    try:
        spec = json.loads(sys.stdin.readline())
        _worker(spec, reply)
    except Exception as exc:  # reported to rank 0, which raises WorkerError with it
        import traceback
        traceback.print_exc()
        reply({"error": f"failed: {type(exc).__name__}: {exc}"})
        sys.exit(1)


if __name__ == "__main__":
    main()
