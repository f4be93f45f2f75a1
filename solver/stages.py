"""Route 1 (`mrfnet caffe-stages`): the loss-weight groups as consecutive `caffe train` runs.

Each stage is a stock-layer train net (one EuclideanLoss per scale, loss_weight from its group's
weights, so `-gpu 0,1,2,3` works on a CUDA + NCCL build) with its own solver. Every stage after
the first starts from the previous stage's final snapshot, in one of two ways (--chain):

- "weights" (`caffe train -weights prev.caffemodel`): a fresh solver per stage; the iteration
  restarts at 0 and Adam's moments at zero, so later stages get a "multistep" lr with the step
  points shifted, making lr against global iteration the same curve as one "step" run (or, with
  --restart-lr, every stage starts again at base_lr).
- "snapshot" (`caffe train -snapshot prev.solverstate`): the stage solvers count global
  iterations (max_iter = the stage's end), so iteration, lr ("step" policy) and Adam's moments
  continue exactly; only the loss weights change. The default: it also works with Caffe builds
  whose `caffe train` ignores -weights (the unpatched brocolli-caffe tree; this project's build
  restores the loading, tools/caffe/fix_sources.sh).

Files go into the run dir with paths relative to it; the commands run from inside it.
"""
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from layers.loss_groups import stage_iterations
from prototxt_gen.topology import DEFAULT_PATHS, DEFAULT_VARIANT, check_paths, TopologyError
from solver import plan as PL
from solver import runfiles as RF
from solver import schedule as S
from solver import solver_file as SF
from solver.caffelog import parse as parse_log
from solver.data import count_entries
from solver.errors import MissingInputError, RunConfigError


CHAINS = ("snapshot", "weights")


def parse_gpus(text):
    """'0,1,2,3' -> [0, 1, 2, 3]; None/'' -> [] (CPU)."""
    if not text:
        return []
    try:
        ids = [int(x) for x in str(text).split(",") if x.strip() != ""]
    except ValueError:
        raise RunConfigError(f"--gpus {text!r}: give comma-separated integers like 0,1,2,3") from None
    if not ids or len(set(ids)) != len(ids) or min(ids) < 0:
        raise RunConfigError(f"--gpus {text!r}: give distinct non-negative ids like 0,1,2,3")
    return ids


def stage_lr(schedule, start, end, restart=False):
    """(base_lr, stepvalues or None) of a stage covering global iterations [start, end)."""
    if restart or start == 0:
        return schedule["base_lr"], None
    step = schedule["stepsize"]
    base = S.lr_at(start, schedule["base_lr"], schedule["gamma"], step)
    first = (start // step + 1) * step
    return base, [b - start for b in range(first, end, step)]


def find_caffe(explicit=None):
    """The caffe command: --caffe, else `caffe` beside this interpreter (the venv's wrapper that
    makes Python layers importable), else PATH."""
    if explicit:
        path = shutil.which(explicit) or (explicit if os.path.exists(explicit) else None)
        if not path:
            raise MissingInputError(f"--caffe {explicit}: not found")
        return path
    beside = Path(sys.executable).parent / "caffe"
    if beside.exists():
        return str(beside)
    path = shutil.which("caffe")
    if not path:
        raise MissingInputError("no `caffe` command found; run `make caffe` or pass --caffe")
    return path


def build(cfg):
    """Write every file of the staged run and return the plan:
    {"run_dir", "stages": [{"stage", "weights", "solver", "train_net", "argv", "final", ...}],
     "schedule", "groups", "commands"}."""
    variant = cfg.get("variant") or DEFAULT_VARIANT
    paths = cfg.get("paths") or DEFAULT_PATHS
    try:
        check_paths(paths)
    except TopologyError as exc:
        raise RunConfigError(str(exc)) from None
    if not cfg.get("train_db"):
        raise RunConfigError("--train-db is required")
    if not cfg.get("out"):
        raise RunConfigError("--out is required (the run directory)")
    gpus = parse_gpus(cfg.get("gpus"))
    run_dir = Path(cfg["out"]).resolve()
    (run_dir / "snapshots").mkdir(parents=True, exist_ok=True)
    crop = cfg.get("crop") or S.PAPER["crop"]
    RF.check_crop(cfg["train_db"], crop, paths)
    val_db = cfg.get("val_db")
    val_size = count_entries(val_db) if val_db else 0
    if val_db:
        RF.check_crop(val_db, crop, paths, option="--crop (validation DB)")
    sched = PL.make_schedule(
        count_entries(cfg["train_db"]), total_batch=cfg.get("batch"), gpus=max(1, len(gpus)),
        crop=crop, epochs=cfg.get("epochs"), iters=cfg.get("iters"), dataset=cfg.get("dataset"),
        base_lr=cfg.get("base_lr"), stepsize=cfg.get("stepsize"),
        snapshot_every=cfg.get("snapshot_every"), val_size=val_size,
        val_every=cfg.get("val_every"), lr_policy=cfg.get("lr_policy"))
    groups = PL.load_groups(cfg.get("loss_groups"), paths)
    stages = stage_iterations(groups, int(sched["max_iter"]))
    if sched["lr_policy"] == "poly" and len(stages) > 1:
        raise RunConfigError(f"--lr-policy poly decays to 0 at each solver's max_iter, and these "
                             f"loss-weight groups make {len(stages)} stages; give one group "
                             f"(--loss-groups models/mrfnet/loss_groups_equal.json) or --lr-policy step")
    penalty, clip = cfg.get("loss") or "l2", cfg.get("clip_gradients")
    seed = cfg.get("seed") if cfg.get("seed") is not None else 0
    mode = "GPU" if gpus else "CPU"
    header = [f"generated by `mrfnet caffe-stages` for {variant} P={paths}, crop {crop}, "
              f"batch {sched['batch_per_gpu']} per {'GPU' if gpus else 'iteration'}"]

    test_net = None
    if val_db:
        RF.write_test_net(run_dir / "val.prototxt", variant, paths, val_db, run_dir, crop,
                          sched["val_batch"], header=header)
        test_net = "val.prototxt"
    RF.write_deploy_net(run_dir / "deploy.prototxt", variant, paths, crop, crop, header=header)

    chain = cfg.get("chain") or "snapshot"
    if chain not in CHAINS:
        raise RunConfigError(f"--chain {chain!r}: choose one of {list(CHAINS)}")
    if cfg.get("restart_lr") and chain != "weights":
        raise RunConfigError("--restart-lr needs --chain weights (a continued snapshot keeps "
                             "its lr curve)")
    display = cfg.get("display") or 20
    out_stages = []
    prev = None
    for st in stages:
        i = st["stage"] + 1
        start, end = st["start_iter"], st["end_iter"]
        net_name = f"stage{i}_train.prototxt"
        RF.write_train_net(run_dir / net_name, variant, paths, cfg["train_db"], run_dir, crop,
                           sched["batch_per_gpu"], "stock", weights=st["weights"], penalty=penalty,
                           header=header + [f"stage {i}: loss-weight group {st['group'] + 1}, "
                                            f"weights {st['weights']} (coarse -> fine)"])
        prefix = f"snapshots/stage{i}"
        if chain == "snapshot":
            params = SF.solver_params(sched, net_name, prefix, test_net=test_net,
                                      solver_mode=mode, random_seed=seed, max_iter=end,
                                      display=display, clip_gradients=clip)
            final_iter = end
            lr_line = (f"lr: the single-run 'step' curve; this solver resumes at global "
                       f"iteration {start} with -snapshot and stops at {end}")
            span = f"global iterations {start}..{end}"
        else:
            base_lr, stepvalues = stage_lr(sched, start, end, cfg.get("restart_lr", False))
            params = SF.solver_params(sched, net_name, prefix, test_net=test_net,
                                      solver_mode=mode, random_seed=seed, max_iter=end - start,
                                      base_lr=base_lr, stepvalues=stepvalues, display=display,
                                      snapshot=min(sched["snapshot"], end - start),
                                      clip_gradients=clip)
            final_iter = end - start
            lr_line = (f"lr: step policy from base_lr {base_lr:g}" if stepvalues is None else
                       f"lr: continues the single-run curve: base_lr {base_lr:g} (= lr at global "
                       f"iteration {start}), halved at stage iterations {stepvalues}")
            span = f"global iterations {start}..{end} (this solver counts 0..{end - start})"
        comments = [f"stage {i} of {len(stages)}: {span}, loss weights {st['weights']}",
                    lr_line] + sched["explanation"]
        solver_name = f"stage{i}_solver.prototxt"
        SF.write_solver(run_dir / solver_name, params, comments)
        argv = ["caffe", "train", "-solver", solver_name]
        if prev:
            argv += ["-snapshot", prev["state"]] if chain == "snapshot" else ["-weights", prev["model"]]
        if gpus:
            argv += ["-gpu", ",".join(str(g) for g in gpus)]
        final = f"{prefix}_iter_{final_iter}.caffemodel"
        out_stages.append({"stage": i, "group": st["group"] + 1, "start_iter": start,
                           "end_iter": end, "weights": st["weights"], "train_net": net_name,
                           "solver": solver_name, "argv": argv, "final": final,
                           "final_state": f"{prefix}_iter_{final_iter}.solverstate",
                           "log": f"stage{i}.log", "chain": chain,
                           "starts_from": prev["model"] if prev else None})
        prev = {"model": final, "state": f"{prefix}_iter_{final_iter}.solverstate"}
    commands = [f"cd {shlex.quote(str(run_dir))}"] + [
        " ".join(shlex.quote(a) for a in s["argv"]) + f" 2>&1 | tee {s['log']}" for s in out_stages]
    script = ["#!/usr/bin/env bash",
              "# generated by `mrfnet caffe-stages`: the loss-weight groups as consecutive "
              "`caffe train` runs",
              "set -euo pipefail", 'cd "$(dirname "$0")"', "export GLOG_logtostderr=1"]
    script += [" ".join(shlex.quote(a) for a in s["argv"]) + f" 2>&1 | tee {s['log']}"
               for s in out_stages]
    (run_dir / "run_stages.sh").write_text("\n".join(script) + "\n")
    os.chmod(run_dir / "run_stages.sh", 0o755)
    return {"run_dir": str(run_dir), "stages": out_stages, "schedule": sched, "groups": groups,
            "commands": commands, "gpus": gpus, "chain": chain}


def run_stages(plan, caffe=None, from_stage=1, stream=None):
    """Run the stages with the real `caffe` (output tee'd to stageN.log); returns a summary with
    per-stage parsed logs. Raises StageFailed when a stage fails."""
    stream = stream or sys.stdout
    run_dir = Path(plan["run_dir"])
    caffe = find_caffe(caffe)
    n = len(plan["stages"])
    if not 1 <= from_stage <= n:
        raise RunConfigError(f"--from-stage {from_stage}: the plan has stages 1..{n}")
    if from_stage > 1:
        key = "final_state" if plan["chain"] == "snapshot" else "final"
        prev = run_dir / plan["stages"][from_stage - 2][key]
        if not prev.exists():
            raise MissingInputError(f"--from-stage {from_stage}: {prev} does not exist; "
                                    f"run stage {from_stage - 1} first")
    env = dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0")
    results = []
    for st in plan["stages"][from_stage - 1:]:
        argv = [caffe] + st["argv"][1:]
        print(f"[stage {st['stage']}/{n}] {' '.join(st['argv'])}  (log: {run_dir / st['log']})",
              file=stream, flush=True)
        log_path = run_dir / st["log"]
        with open(log_path, "w") as log:
            proc = subprocess.Popen(argv, cwd=run_dir, stdout=log, stderr=subprocess.STDOUT, env=env)
            try:
                rc = proc.wait()
            except KeyboardInterrupt:
                # caffe got the same SIGINT: its default -sigint_effect stop snapshots and exits
                rc = proc.wait()
                raise StageInterrupted(st, run_dir) from None
        text = log_path.read_text(errors="replace")
        final = run_dir / st["final"]
        if rc != 0 or not final.exists():
            tail = "\n".join(text.splitlines()[-15:])
            raise StageFailed(f"stage {st['stage']} failed (exit code {rc}); see {log_path}. "
                              f"Last lines:\n{tail}")
        if st["chain"] == "weights" and st["starts_from"] and "Finetuning from" not in text:
            raise StageFailed(
                f"stage {st['stage']}: this caffe ignored `-weights {st['starts_from']}` (its log "
                f"{log_path} has no 'Finetuning from' line), so the stage trained from scratch. "
                f"Use --chain snapshot, or a caffe whose tools/caffe.cpp loads -weights")
        parsed = parse_log(text)
        losses = parsed["loss"]
        res = {"stage": st["stage"], "final": str(final), "log": str(log_path),
               "first_loss": losses[min(losses)] if losses else None,
               "last_loss": losses[max(losses)] if losses else None, "parsed": parsed}
        tests = parsed["test"]
        if tests:
            res["last_test"] = tests[max(tests)]
        results.append(res)
        msg = f"[stage {st['stage']}/{n}] done"
        if losses:
            msg += f": loss {res['first_loss']:.4g} (iteration {min(losses)}) -> " \
                   f"{res['last_loss']:.4g} (iteration {max(losses)})"
        if "last_test" in res:
            msg += "; validation " + ", ".join(f"{k} {v:.4g}" for k, v in res["last_test"].items())
        print(msg + f"; weights {final}", file=stream, flush=True)
    return {"run_dir": str(run_dir), "stages": results,
            "final": results[-1]["final"] if results else None}


class StageFailed(RuntimeError):
    """`caffe train` of a stage exited non-zero or left no final snapshot."""


class StageInterrupted(RuntimeError):
    """Ctrl-C during a stage: caffe wrote a snapshot; the message says how to continue."""

    def __init__(self, st, run_dir):
        states = sorted((run_dir / "snapshots").glob(f"stage{st['stage']}_iter_*.solverstate"),
                        key=lambda p: int(p.stem.rsplit("_", 1)[1]))
        if states:
            how = (f"continue this stage with: cd {run_dir} && caffe train -solver {st['solver']} "
                   f"-snapshot snapshots/{states[-1].name}, then the later stages with "
                   f"`mrfnet caffe-stages ... --from-stage {st['stage'] + 1}`")
        else:
            how = f"no snapshot of stage {st['stage']} was written; rerun with --from-stage {st['stage']}"
        super().__init__(f"interrupted during stage {st['stage']}; {how}")


if __name__ == "__main__":  # kept for old scripts: use `mrfnet caffe-stages`
    from mrfnet.cli import main
    sys.exit(main(["caffe-stages", *sys.argv[1:]]))
