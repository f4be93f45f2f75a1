"""Seconds per training iteration and peak memory (RSS) of a training configuration.

`time_training(variant, batch, crop, iters)` runs the measurement in a fresh subprocess, so the
peak RSS belongs to that configuration alone (ru_maxrss never goes down within a process). The
child builds the real train net (Python-loss flavour, as `mrfnet train` uses) on a small
synthetic LMDB of `batch` patches, takes `warmup` untimed Adam steps, then times `iters` steps.
"""
import json
import os
import subprocess
import sys
import tempfile


def time_training(variant="mrfnet", batch=16, crop=256, iters=3, paths=4, warmup=1, timeout=3600,
                  env=None, workers=1):
    """{"seconds_per_iter", "step_seconds", "peak_rss_mb", "setup_seconds", ...} measured in a
    subprocess (whose environment is `env`, default this one's); raises RuntimeError with the
    child's stderr tail when it fails."""
    cmd = [sys.executable, "-m", "mrfnet.cli", "measure", "--variant", variant, "--batch", str(batch),
           "--crop", str(crop), "--iters", str(iters), "--paths", str(paths),
           "--warmup", str(warmup), "--workers", str(workers)]
    env = dict(os.environ if env is None else env, GLOG_minloglevel="2")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
        raise RuntimeError(f"time_training({variant}, batch {batch}, crop {crop}) failed "
                           f"(exit {proc.returncode}):\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(variant, batch, crop, iters, paths, warmup, workers=1):
    """The measurement itself, in this process (`mrfnet measure` runs it; time_training runs
    that in a fresh process)."""
    import resource
    import time
    t_setup = time.perf_counter()
    import caffe
    from solver import runfiles as RF
    from solver import schedule as S
    from solver import solver_file as SF
    from solver import parallel as DP
    from solver.synthetic import write_lmdb
    with tempfile.TemporaryDirectory(prefix="mrfnet-measure-") as d:
        db = write_lmdb(os.path.join(d, "train_lmdb"), batch, crop, seed=0)
        net = RF.write_train_net(os.path.join(d, "train.prototxt"), variant, paths, db, d, crop,
                                 batch, "python")
        if workers > 1:  # `mrfnet train --workers`: rank 0 here, the others in subprocesses
            DP.check_workers(workers, batch)
            ranks = DP.write_rank_nets(net, d, workers)
            net = ranks[0]
        sched = S.paper_schedule(batch, total_batch=batch, crop=crop, epochs=1)
        params = SF.solver_params(sched, net, os.path.join(d, "snap"), snapshot=0,
                                  random_seed=0, max_iter=warmup + iters)
        path = SF.write_solver(os.path.join(d, "solver.prototxt"), params)
        caffe.set_mode_cpu()
        solver = caffe.get_solver(path)
        group = None
        if workers > 1:
            group = DP.WorkerGroup(solver, [DP.worker_spec(solver.net, r, 0) for r in ranks[1:]])
        solver.step(warmup)
        setup = time.perf_counter() - t_setup
        times = []
        for _ in range(iters):
            t = time.perf_counter()
            solver.step(1)
            times.append(time.perf_counter() - t)
        params_count = sum(int(b.data.size) for bl in solver.net.params.values() for b in bl)
        worker_rss = group.close() if group else []
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "variant": variant, "paths": paths, "batch": batch, "crop": crop, "iters": iters,
        "warmup": warmup, "seconds_per_iter": sum(times) / len(times), "step_seconds": times,
        "peak_rss_mb": rss_kb / 1024.0 + sum(worker_rss), "workers": workers,
        "setup_seconds": setup, "parameters": params_count,
        "cpu_count": os.cpu_count(), "mode": "CPU",
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    }


if __name__ == "__main__":  # kept for old scripts: use `mrfnet measure`
    from mrfnet.cli import main
    sys.exit(main(["measure", *sys.argv[1:]]))
