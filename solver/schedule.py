"""The paper's training setup (section IV.A) as data, and the arithmetic that turns it into
Caffe solver numbers for a given dataset size, batch and GPU count.

Paper: Adam (beta1 0.9, beta2 0.999), lr 1e-4 halved every 10 epochs, 70 epochs VisDrone,
50 epochs GOPRO, batch 16 of 256x256 crops on four GPUs. Caffe counts iterations, not epochs,
and with `-gpu 0,1,2,3` every GPU runs the prototxt's batch, so the per-GPU batch is the total
batch divided by the GPU count. The paper's numbers are the table prototxt_gen.solver_spec.PAPER.
Plain Python: no Caffe import, so it is cheap to test and reuse.
"""
import math

from prototxt_gen.solver_spec import PAPER
from solver.errors import ScheduleError

DATASETS = tuple(PAPER["epochs"])
# Our choices (not in the paper): validate once per epoch, snapshot every 5 epochs (half an lr
# step; an Adam snapshot is ~3x the model size, so one per epoch would be 70 of them for VisDrone).
DEFAULT_TEST_EPOCHS = 1
DEFAULT_SNAPSHOT_EPOCHS = 5


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ScheduleError(f"{name} must be a positive integer, got {value!r}")
    return value


def iterations_per_epoch(num_patches, total_batch):
    """Iterations for one pass over `num_patches` training patches at `total_batch` per
    iteration (summed over GPUs); rounded up so that every patch is seen once per epoch."""
    _positive_int(num_patches, "number of training patches")
    _positive_int(total_batch, "total batch")
    return -(-num_patches // total_batch)


def per_gpu_batch(total_batch, gpus):
    """(batch to write into the train prototxt, explanation line).

    Caffe's multi-GPU training gives every GPU the prototxt's batch and averages the gradients,
    so the effective batch is batch * GPUs; keeping the paper's total needs total / GPUs.
    """
    _positive_int(total_batch, "total batch")
    _positive_int(gpus, "GPU count")
    if total_batch % gpus:
        divisors = [g for g in range(1, total_batch + 1) if total_batch % g == 0]
        raise ScheduleError(
            f"total batch {total_batch} cannot be split evenly over {gpus} GPUs (Caffe gives "
            f"every GPU the same prototxt batch); use a GPU count in {divisors} or change the batch")
    per = total_batch // gpus
    if gpus == 1:
        line = f"batch: {total_batch} per iteration on one device"
    else:
        line = (f"batch: total {total_batch} = {gpus} GPUs x {per} per GPU; the train prototxt "
                f"says batch_size {per} because Caffe runs that batch on every GPU")
    return per, line


def epochs_for(dataset):
    """The paper's epoch count for 'visdrone' or 'gopro'."""
    key = str(dataset).lower()
    if key not in PAPER["epochs"]:
        raise ScheduleError(f"unknown dataset {dataset!r}: the paper gives epochs for {list(DATASETS)}; "
                            f"pass epochs explicitly for other data")
    return PAPER["epochs"][key]


LR_POLICIES = ("step", "poly")


def lr_at(iteration, base_lr, gamma, stepsize, policy="step", max_iter=None, power=1.0):
    """The learning rate Caffe uses for the update at `iteration` (0-based, the solver's iter
    before the step): "step" base_lr * gamma ^ floor(iteration / stepsize) (the paper's), "poly"
    base_lr * (1 - iteration / max_iter) ^ power (decays to 0 at max_iter; Caffe's formula)."""
    if policy == "poly":
        return base_lr * (1.0 - float(iteration) / float(max_iter)) ** float(power)
    return base_lr * gamma ** (int(iteration) // int(stepsize))


def paper_schedule(num_patches, dataset="gopro", epochs=None, total_batch=None, gpus=1,
                   crop=None, val_size=0, val_batch=None, base_lr=None, step_epochs=None,
                   test_epochs=DEFAULT_TEST_EPOCHS, snapshot_epochs=DEFAULT_SNAPSHOT_EPOCHS,
                   iters=None, stepsize=None, snapshot_every=None, val_every=None,
                   lr_policy="step", power=1.0):
    """The solver numbers for a run, as a dict with an "explanation" list of lines.

    num_patches: entries in the training database (one crop each); dataset picks the paper's
    epochs unless `epochs` is given; total_batch defaults to the paper's 16 and is split over
    `gpus`; val_size/val_batch give test_iter (0 = no validation net). iters, stepsize,
    snapshot_every and val_every (iterations) override the epoch-derived values. lr_policy
    "poly" (not the paper's: linear decay to 0 at max_iter with power 1) replaces the step decay.
    """
    if lr_policy not in LR_POLICIES:
        raise ScheduleError(f"unknown lr policy {lr_policy!r}: choose one of {list(LR_POLICIES)}")
    power = float(power)
    if not (power > 0 and math.isfinite(power)):
        raise ScheduleError(f"poly power must be a positive finite number, got {power!r}")
    if iters is not None and epochs is not None:
        raise ScheduleError("give iterations or epochs, not both")
    for name, value in (("iterations", iters), ("stepsize", stepsize),
                        ("snapshot interval", snapshot_every), ("validation interval", val_every)):
        if value is not None:
            _positive_int(value, name)
    epochs = epochs_for(dataset) if epochs is None else _positive_int(epochs, "epochs")
    total_batch = PAPER["total_batch"] if total_batch is None else total_batch
    crop = PAPER["crop"] if crop is None else _positive_int(crop, "crop")
    base_lr = PAPER["base_lr"] if base_lr is None else float(base_lr)
    if not (base_lr > 0 and math.isfinite(base_lr)):
        raise ScheduleError(f"base_lr must be a positive finite number, got {base_lr!r}")
    step_epochs = PAPER["step_epochs"] if step_epochs is None else _positive_int(step_epochs, "step epochs")
    per_gpu, batch_line = per_gpu_batch(total_batch, gpus)
    ipe = iterations_per_epoch(num_patches, total_batch)
    lines = [
        f"solver: Adam beta1 {PAPER['beta1']} beta2 {PAPER['beta2']} (paper IV.A), "
        f"delta {PAPER['delta']:g} and weight_decay 0 (Caffe defaults; the paper gives none)",
        batch_line,
        f"epoch: {num_patches} training patches / {total_batch} per iteration = {ipe} iterations "
        f"(rounded up)",
    ]
    if iters is None:
        max_iter = epochs * ipe
        lines.append(f"max_iter: {epochs} epochs x {ipe} = {max_iter}")
    else:
        max_iter, epochs = iters, iters / ipe
        lines.append(f"max_iter: {max_iter} (given; {epochs:.3g} epochs)")
    if stepsize is None:
        stepsize = step_epochs * ipe
        step_text = f"{step_epochs} epochs = {stepsize} iterations"
    else:
        step_text = f"{stepsize} iterations (given)"
    if lr_policy == "poly":
        lines.append(f"lr: base_lr {base_lr:g}, lr_policy poly, power {power:g}: "
                     f"base_lr * (1 - iter/{max_iter})^{power:g}, 0 at max_iter (not the paper's "
                     f"step decay)")
    else:
        lines.append(f"lr: base_lr {base_lr:g}, lr_policy step, gamma {PAPER['gamma']}, stepsize "
                     f"{step_text}; {(max_iter - 1) // stepsize} halvings within max_iter")
    if snapshot_every is None:
        snapshot = min(max_iter, _positive_int(snapshot_epochs, "snapshot epochs") * ipe)
        lines.append(f"snapshot: every {snapshot} iterations ({snapshot_epochs} epochs, capped "
                     f"at max_iter)")
    else:
        snapshot = snapshot_every
        lines.append(f"snapshot: every {snapshot} iterations (given)")
    lines.append(f"crop: {crop}x{crop}")
    val_size = int(val_size or 0)
    if val_size < 0:
        raise ScheduleError(f"validation set size must be >= 0, got {val_size}")
    if val_size:
        val_batch = per_gpu if val_batch is None else _positive_int(val_batch, "validation batch")
        test_iter = -(-val_size // val_batch)
        if val_every is None:
            test_interval = _positive_int(test_epochs, "test epochs") * ipe
            when = f"{test_epochs} epoch"
        else:
            test_interval, when = val_every, "given"
        lines.append(f"validation: {val_size} patches / batch {val_batch} = test_iter {test_iter}, "
                     f"every {test_interval} iterations ({when}); Caffe tests on the first GPU only")
    else:
        val_batch, test_iter, test_interval = None, 0, 0
        lines.append("validation: none (no validation set given)")
    return {
        "type": PAPER["type"], "momentum": PAPER["beta1"], "momentum2": PAPER["beta2"],
        "delta": PAPER["delta"], "weight_decay": PAPER["weight_decay"],
        "base_lr": base_lr, "lr_policy": lr_policy, "power": power, "gamma": PAPER["gamma"],
        "stepsize": stepsize, "max_iter": max_iter, "snapshot": snapshot,
        "test_iter": test_iter, "test_interval": test_interval, "val_batch": val_batch,
        "epochs": epochs, "iterations_per_epoch": ipe, "num_patches": num_patches,
        "total_batch": total_batch, "gpus": gpus, "batch_per_gpu": per_gpu, "crop": crop,
        "explanation": lines,
    }
