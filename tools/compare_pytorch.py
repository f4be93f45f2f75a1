#!/usr/bin/env python3
"""One CPU training step of the MRFNet train net: this project's Caffe against the same graph in
PyTorch (issue 13's yardstick), measured in one run on one machine.

A standalone tool: the project does not import it and PyTorch is not a project dependency. Run it
with the project's venv Python (which has pycaffe); give a Python that has torch (and numpy) with
--torch-python, e.g. a throwaway venv outside the repository:

    .venv/bin/python tools/compare_pytorch.py --torch-python PATH/TO/torchvenv/bin/python

On a shared machine, give the run priority. Where the kernel groups processes by session
(autogroup; the report says so) `nice` alone does not rank it above a build in another session,
so raise the run's own session too:

    setsid sh -c 'echo -10 > /proc/self/autogroup; exec nice -n -10 .venv/bin/python \
        tools/compare_pytorch.py --torch-python PATH/TO/torchvenv/bin/python --rounds 3'

What it does, each part in its own fresh subprocess:

1. prepare (Caffe Python): reads the generated stock-loss train net (default: this checkout's
   models/mrfnet/train.prototxt: Data -> Slice -> MRFNet -> one EuclideanLoss per path, eq. (5)
   through the loss weights) with caffe_pb2, sets the Data layer to --batch and
   --crop on a synthetic LMDB (solver/synthetic.py) and rescales the EuclideanLoss loss_weights
   from the file's crop to --crop (they are w_k / (P * 3 * side_k^2), so they scale with 1/crop^2;
   checked against prototxt_gen when it imports). It builds a pycaffe Net of that file, runs one
   forward/backward, and saves the input batch, the initial weights, their gradients, the losses
   and a layer-by-layer description of the net (JSON: mrfnet.netfile's layer specs, Caffe's
   defaults filled in) for the PyTorch side.
2. check (torch Python): translates the net layer by layer into PyTorch (Slice, Split, Concat,
   Convolution, Deconvolution = conv_transpose2d, ReLU, Pooling MAX/AVE with Caffe's output-size
   rule, Eltwise SUM/PROD/MAX with coefficients, Power, Scale, EuclideanLoss with loss_weight,
   Silence; Data/Input become tensors of the recorded shapes; any other type stops the run),
   loads the same weights, checks every blob shape against Caffe's, runs the forward on Caffe's
   input batch and compares the total loss (must agree within --loss-rtol, 1e-4 relative) and
   the gradients (reported).
3. timing, --rounds rounds alternating PyTorch / Caffe, each side in a fresh subprocess that
   loads the same initial weights, takes --warmup untimed steps and times --steps steps one by one:
   - PyTorch: zero_grad, forward on random tensors of the Data layer's shape (uniform [0,1],
     fixed for the run), backward, torch.optim.Adam step; torch.set_num_threads(--torch-threads).
     OMP_WAIT_POLICY=PASSIVE by default, as pycaffe sets it for Caffe (patch 0004): on a loaded
     2-core machine libgomp's default spinning makes PyTorch's 2 threads several times slower.
     --torch-omp-wait PASSIVE,unset times both (one PyTorch side per value, in every round).
   - Caffe: pycaffe `caffe.get_solver(...)` on the same train net (stock EuclideanLoss, Data layer
     reading the synthetic LMDB with its prefetch thread, as `caffe train` runs it) and
     `solver.step(1)`: clear diffs, forward, backward, Adam update.
   Both: Adam lr 1e-4, betas 0.9/0.999, eps 1e-8, no weight decay, fixed lr
   (prototxt_gen.solver_spec.ADAM, the solver file written by its render).

It prints the CPU model (lscpu), the load average before and after, per-step median and min of
both sides over all rounds, per-round medians, and the ratios (Caffe / PyTorch: above 1 means
Caffe is slower). --json FILE also writes everything as JSON.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # the project's plain-Python modules, on both sides
    sys.path.insert(0, str(ROOT))
from mrfnet.caffe_log import quiet_caffe  # noqa: E402
from mrfnet import netfile  # noqa: E402
from prototxt_gen.solver_spec import ADAM, render as render_solver  # noqa: E402

DEFAULT_PROTOTXT = ROOT / "models" / "mrfnet" / "train.prototxt"


# Caffe layer types this tool translates. Anything else is refused (by both sides).
SUPPORTED = ("Data", "Input", "Slice", "Split", "Concat", "Convolution", "Deconvolution", "ReLU",
             "Pooling", "Eltwise", "Power", "Scale", "EuclideanLoss", "Silence")
LOSS_TYPES = ("EuclideanLoss",)


class Refused(SystemExit):
    """A net this tool cannot translate faithfully: stop loudly rather than time something else."""

    def __init__(self, msg):
        super().__init__(f"compare_pytorch: {msg}")


# --------------------------------------------------------------------------------------------
# Caffe side (run with the project's Python)
# --------------------------------------------------------------------------------------------

def layer_spec(lp):
    """A plain-dict description of one LayerParameter: mrfnet.netfile's LayerSpec (Caffe's
    defaults filled in), refused where this tool's translation would not be faithful."""
    t, name = lp.type, lp.name
    if t not in SUPPORTED:
        raise Refused(f"layer {name!r} has type {t!r}, which this tool does not translate "
                      f"(supported: {', '.join(SUPPORTED)})")
    for p in lp.param:
        if p.name:
            raise Refused(f"layer {name}: shared parameters (param name {p.name!r}) are not "
                          f"translated")
    if t not in LOSS_TYPES and any(float(v) != 0.0 for v in lp.loss_weight):
        raise Refused(f"layer {name}: loss_weight on a {t} layer is not translated")
    if t in ("Convolution", "Deconvolution") and (lp.convolution_param.width_group != 1
                                                  or lp.convolution_param.height_group != 1):
        raise Refused(f"layer {name}: width_group/height_group are not translated")
    try:
        spec = netfile.layer_spec(netfile.message_fields(lp), "train net").as_dict()
    except netfile.NetFileError as exc:
        raise Refused(str(exc)) from None
    if t in ("Convolution", "Deconvolution") and spec["axis"] != 1:
        raise Refused(f"layer {name}: convolution axis {spec['axis']} (only 1)")
    if t == "Pooling" and spec["pool"] not in ("MAX", "AVE"):
        raise Refused(f"layer {name}: pooling method {spec['pool']} is not translated")
    if t == "Eltwise" and spec["coeff"] and spec["operation"] != "SUM":
        raise Refused(f"layer {name}: Eltwise coefficients only work with SUM")
    if t == "Eltwise" and spec["coeff"] and len(spec["coeff"]) != len(spec["bottoms"]):
        raise Refused(f"layer {name}: {len(spec['coeff'])} coefficients for "
                      f"{len(spec['bottoms'])} bottoms")
    if t == "Scale" and (len(spec["bottoms"]) != 1 or spec["axis"] != 1 or spec["num_axes"] != 1):
        raise Refused(f"layer {name}: only a one-bottom Scale with axis 1, num_axes 1 "
                      f"(per-channel) is translated")
    return spec


def _import_caffe():
    import caffe
    caffe.set_mode_cpu()
    return caffe


def _rescaled_net(prototxt, batch, crop, work):
    """The train net at --batch/--crop on a synthetic LMDB in `work`: (NetParameter, notes)."""
    from caffe.proto import caffe_pb2
    net = netfile.read_message(prototxt)
    notes = []
    data = [lp for lp in net.layer if lp.type == "Data"]
    if len(data) != 1:
        raise Refused(f"{prototxt}: expected one Data layer, found {len(data)}")
    dl = data[0]
    if dl.data_param.backend != caffe_pb2.DataParameter.LMDB:
        raise Refused(f"{prototxt}: the Data layer must read an LMDB")
    old_crop = int(dl.transform_param.crop_size)
    if not old_crop:
        raise Refused(f"{prototxt}: the Data layer has no crop_size, so the loss weights' crop "
                      f"is unknown")
    notes.append(f"Data layer: batch {dl.data_param.batch_size} -> {batch}, crop {old_crop} -> "
                 f"{crop}, source -> a synthetic LMDB of {batch} patches of {crop}x{crop} "
                 f"(solver/synthetic.py), mirror {dl.transform_param.mirror}")
    dl.data_param.batch_size = batch
    dl.transform_param.crop_size = crop
    from solver.synthetic import write_lmdb
    dl.data_param.source = write_lmdb(os.path.join(work, "train_lmdb"), batch, crop, seed=0)
    factor = (old_crop / crop) ** 2
    losses = [lp for lp in net.layer if lp.type in LOSS_TYPES]
    old_w = [float(lp.loss_weight[0]) if lp.loss_weight else 1.0 for lp in losses]
    for lp, w in zip(losses, old_w):
        del lp.loss_weight[:]
        lp.loss_weight.append(w * factor)
    new_w = [float(lp.loss_weight[0]) for lp in losses]
    notes.append(f"EuclideanLoss loss_weight x (crop {old_crop} / {crop})^2 = x {factor:g}: "
                 + ", ".join(f"{lp.name} {w:.6g}" for lp, w in zip(losses, new_w)))
    try:  # the project's own formula, when it imports: same weights?
        from prototxt_gen.nets import stock_loss_weights
        ref = stock_loss_weights(len(losses), crop)
        worst = max(abs(a - b) / b for a, b in zip(new_w, ref))
        notes.append(f"  vs prototxt_gen.nets.stock_loss_weights({len(losses)}, {crop}) "
                     f"(default weights 1): largest relative difference {worst:.2e}")
    except Exception as exc:  # noqa: BLE001 - a cross-check only
        notes.append(f"  (not cross-checked with prototxt_gen: {exc})")
    return net, notes


def caffe_prepare(a):
    caffe = _import_caffe()
    import numpy as np
    work = a.work
    netp, notes = _rescaled_net(a.prototxt, a.batch, a.crop, work)
    train = os.path.join(work, "train.prototxt")
    Path(train).write_text(netfile.message_text(netp))
    Path(work, "solver.prototxt").write_text(render_solver(dict(
        ADAM, train_net=train, lr_policy="fixed", max_iter=10 ** 8, display=0, snapshot=0,
        snapshot_after_train=False, solver_mode="CPU", random_seed=0)))

    caffe.set_random_seed(0)
    net = caffe.Net(train, caffe.TRAIN)
    present = set(net._layer_names)
    file_layers = [lp for lp in netp.layer if lp.name in present]  # Caffe's own phase filter
    specs = [layer_spec(lp) for lp in file_layers]
    skipped = [lp.name for lp in netp.layer if lp.name not in present]
    out = net.forward()
    net.backward()
    arrays = {}
    for lname, blobs in net.params.items():
        for i, b in enumerate(blobs):
            arrays[f"param/{lname}/{i}"] = b.data.copy()
            arrays[f"grad/{lname}/{i}"] = b.diff.copy()
    inputs = {}
    for s in specs:
        if s["type"] in ("Data", "Input"):
            for top in s["tops"]:
                arrays[f"input/{top}"] = net.blobs[top].data.copy()
                inputs[top] = list(net.blobs[top].data.shape)
    np.savez(os.path.join(work, "caffe.npz"), **arrays)
    losses = {s["name"]: {"value": float(out[s["tops"][0]]), "loss_weight": s["loss_weight"][0]}
              for s in specs if s["type"] in LOSS_TYPES}
    total = sum(v["value"] * v["loss_weight"] for v in losses.values())
    shapes = {name: list(net.blobs[name].data.shape) for name in net.blobs.keys()}
    desc = {"layers": specs, "inputs": inputs, "shapes": shapes, "losses": losses,
            "total_loss": total, "notes": notes, "skipped_layers": skipped,
            "parameters": int(sum(b.data.size for bl in net.params.values() for b in bl)),
            "caffe_dir": str(Path(caffe.__file__).resolve().parents[2])}
    Path(work, "net.json").write_text(json.dumps(desc, indent=1))
    print(json.dumps({"total_loss": total, "layers": len(specs)}))


def caffe_time(a):
    caffe = _import_caffe()
    import numpy as np
    t0 = time.perf_counter()
    solver = caffe.get_solver(os.path.join(a.work, "solver.prototxt"))
    init = np.load(os.path.join(a.work, "caffe.npz"))
    for lname, blobs in solver.net.params.items():
        for i, b in enumerate(blobs):
            b.data[...] = init[f"param/{lname}/{i}"]
    solver.step(a.warmup)
    setup = time.perf_counter() - t0
    w = solver.net.blob_loss_weights
    times, losses = [], []
    for _ in range(a.steps):
        t = time.perf_counter()
        solver.step(1)
        times.append(time.perf_counter() - t)
        losses.append(sum(float(solver.net.blobs[n].data) * float(w[n]) for n in solver.net.outputs
                          if float(w[n])))
    print(json.dumps({"side": "caffe", "times": times, "losses": losses, "setup_s": setup,
                      "env": {k: os.environ.get(k) for k in
                              ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY")},
                      "nice": os.nice(0)}))


# --------------------------------------------------------------------------------------------
# PyTorch side (run with --torch-python; imports torch, numpy and the project's plain-Python
# mrfnet.netfile and prototxt_gen.solver_spec)
# --------------------------------------------------------------------------------------------

def build_torch_net(desc, arrays):
    """An nn.Module whose forward(inputs: {top: tensor}) returns (total loss, {loss name: value},
    blobs), running desc["layers"] in order with the weights in `arrays`."""
    import torch
    import torch.nn.functional as F

    layers = desc["layers"]
    for s in layers:
        if s["type"] not in SUPPORTED:
            raise Refused(f"layer {s['name']!r}: type {s['type']!r} is not translated")

    class CaffeNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer_params = {}
            self.lr_mult = {}
            n = 0
            for s in layers:
                keys = sorted((k for k in arrays if k.startswith(f"param/{s['name']}/")),
                              key=lambda k: int(k.rsplit("/", 1)[1]))
                ps = []
                for j, k in enumerate(keys):
                    p = torch.nn.Parameter(torch.from_numpy(arrays[k].copy()))
                    self.register_parameter(f"p{n}", p)
                    n += 1
                    ps.append(p)
                    mult = s["params"][j]["lr_mult"] if j < len(s["params"]) else 1.0
                    self.lr_mult[p] = mult
                    if mult == 0.0:
                        p.requires_grad_(False)
                self.layer_params[s["name"]] = ps
                self._check_params(s, ps)

        @staticmethod
        def _check_params(s, ps):
            t = s["type"]
            if t in ("Convolution", "Deconvolution"):
                want = 2 if s["bias_term"] else 1
            elif t == "Scale":
                want = 2 if s["bias_term"] else 1
            else:
                want = 0
            if len(ps) != want:
                raise Refused(f"layer {s['name']}: {len(ps)} parameter blobs, expected {want}")

        def forward(self, inputs, check_shapes=False):
            blobs = {}
            losses = {}
            total = None
            shapes = desc["shapes"]
            for s in layers:
                t, name, bot, top = s["type"], s["name"], s["bottoms"], s["tops"]
                ps = self.layer_params[name]
                x = [blobs[b] for b in bot]
                if s["propagate_down"]:
                    x = [xi if pd else xi.detach() for xi, pd in zip(x, s["propagate_down"])]
                if t in ("Data", "Input"):
                    y = [inputs[tp] for tp in top]
                elif t == "Silence":
                    y = []
                elif t == "Slice":
                    axis, dim = s["axis"], x[0].shape[s["axis"]]
                    pts = s["slice_point"]
                    if pts:
                        bounds = [0, *pts, dim]
                        sizes = [b - a for a, b in zip(bounds, bounds[1:])]
                    else:
                        if dim % len(top):
                            raise Refused(f"layer {name}: {dim} not divisible by {len(top)} tops")
                        sizes = [dim // len(top)] * len(top)
                    y = list(torch.split(x[0], sizes, dim=axis))
                elif t == "Split":
                    y = [x[0]] * len(top)
                elif t == "Concat":
                    y = [torch.cat(x, dim=s["axis"])]
                elif t == "Convolution":
                    y = [F.conv2d(x[0], ps[0], ps[1] if s["bias_term"] else None,
                                  stride=s["stride"], padding=s["pad"], dilation=s["dilation"],
                                  groups=s["group"])]
                elif t == "Deconvolution":
                    y = [F.conv_transpose2d(x[0], ps[0], ps[1] if s["bias_term"] else None,
                                            stride=s["stride"], padding=s["pad"],
                                            dilation=s["dilation"], groups=s["group"])]
                elif t == "ReLU":
                    inplace = top[0] == bot[0]  # as Caffe runs it
                    if s["negative_slope"]:
                        y = [F.leaky_relu(x[0], s["negative_slope"], inplace=inplace)]
                    else:
                        y = [F.relu(x[0], inplace=inplace)]
                elif t == "Pooling":
                    y = [self._pool(s, x[0])]
                elif t == "Eltwise":
                    op = s["operation"]
                    if op == "SUM":
                        c = s["coeff"] or [1.0] * len(x)
                        acc = x[0] if c[0] == 1.0 else x[0] * c[0]
                        for ci, xi in zip(c[1:], x[1:]):
                            acc = acc + xi if ci == 1.0 else acc + xi * ci
                    elif op == "PROD":
                        acc = x[0]
                        for xi in x[1:]:
                            acc = acc * xi
                    elif op == "MAX":
                        acc = x[0]
                        for xi in x[1:]:
                            acc = torch.maximum(acc, xi)
                    else:
                        raise Refused(f"layer {name}: Eltwise {op} is not translated")
                    y = [acc]
                elif t == "Power":
                    z = x[0]
                    if s["scale"] != 1.0:
                        z = z * s["scale"]
                    if s["shift"] != 0.0:
                        z = z + s["shift"]
                    y = [z if s["power"] == 1.0 else torch.pow(z, s["power"])]
                elif t == "Scale":
                    shape = (1, -1) + (1,) * (x[0].dim() - 2)
                    z = x[0] * ps[0].view(shape)
                    y = [z + ps[1].view(shape) if s["bias_term"] else z]
                elif t == "EuclideanLoss":
                    d = x[0] - x[1]
                    value = (d * d).sum() / (2.0 * x[0].shape[0])
                    losses[name] = value
                    term = value * s["loss_weight"][0]
                    total = term if total is None else total + term
                    y = [value]
                else:  # pragma: no cover - SUPPORTED is checked above
                    raise Refused(f"layer {name}: type {t!r} is not translated")
                for tp, yi in zip(top, y):
                    blobs[tp] = yi
                    if check_shapes and tp in shapes and t not in LOSS_TYPES:
                        if list(yi.shape) != shapes[tp]:
                            raise Refused(f"layer {name}: top {tp} has shape {list(yi.shape)} in "
                                          f"PyTorch but {shapes[tp]} in Caffe")
            if total is None:
                raise Refused("the net has no loss layer")
            return total, losses, blobs

        @staticmethod
        def _pool(s, x):
            h, w = x.shape[2], x.shape[3]
            if s["global_pooling"]:
                k, st, p = [h, w], [1, 1], [0, 0]
            else:
                k, st, p = s["kernel"], s["stride"], s["pad"]
            want = list(netfile.pooled_hw((h, w), k, st, p, s["ceil_mode"]))
            if s["pool"] == "MAX":
                y = F.max_pool2d(x, k, st, p, ceil_mode=s["ceil_mode"])
            else:
                # Caffe's AVE divides by the window clipped to the padded input (padding counts)
                y = F.avg_pool2d(x, k, st, p, ceil_mode=s["ceil_mode"], count_include_pad=True)
            if list(y.shape[2:]) != want:
                raise Refused(f"layer {s['name']}: PyTorch pooling gives {list(y.shape[2:])}, "
                              f"Caffe's rule {want}")
            return y

    return CaffeNet()


def _torch_setup(a):
    import numpy as np
    import torch
    torch.set_num_threads(a.torch_threads)
    desc = json.loads(Path(a.work, "net.json").read_text())
    arrays = dict(np.load(os.path.join(a.work, "caffe.npz")))
    model = build_torch_net(desc, arrays)
    return torch, np, desc, arrays, model


def torch_check(a):
    torch, np, desc, arrays, model = _torch_setup(a)
    inputs = {k: torch.from_numpy(arrays[f"input/{k}"]) for k in desc["inputs"]}
    total, losses, _ = model(inputs, check_shapes=True)
    total.backward()
    caffe_total = desc["total_loss"]
    per_scale = {n: {"caffe": desc["losses"][n]["value"], "torch": float(v)}
                 for n, v in losses.items()}
    worst, worst_name = 0.0, None
    for lname, ps in model.layer_params.items():
        for i, p in enumerate(ps):
            if p.grad is None:
                continue
            g_c = arrays[f"grad/{lname}/{i}"]
            g_t = p.grad.numpy()
            rel = float(np.abs(g_t - g_c).max() / max(np.abs(g_c).max(), 1e-30))
            if rel > worst:
                worst, worst_name = rel, f"{lname}[{i}]"
    rel = abs(float(total) - caffe_total) / abs(caffe_total)
    print(json.dumps({"caffe_total": caffe_total, "torch_total": float(total), "rel": rel,
                      "per_scale": per_scale, "grad_worst_rel": worst,
                      "grad_worst_param": worst_name, "torch": torch.__version__,
                      "threads": torch.get_num_threads(),
                      "mkldnn": bool(torch.backends.mkldnn.is_available())}))


def torch_time(a):
    t0 = time.perf_counter()
    torch, np, desc, arrays, model = _torch_setup(a)
    groups = {}
    for p, mult in model.lr_mult.items():
        if p.requires_grad:
            groups.setdefault(mult, []).append(p)
    lr = ADAM["base_lr"]
    opt = torch.optim.Adam([{"params": ps, "lr": lr * m} for m, ps in groups.items()], lr=lr,
                           betas=(ADAM["momentum"], ADAM["momentum2"]), eps=ADAM["delta"],
                           weight_decay=ADAM["weight_decay"])
    g = torch.Generator().manual_seed(0)
    inputs = {k: torch.rand(shape, generator=g) for k, shape in desc["inputs"].items()}

    def step():
        opt.zero_grad(set_to_none=True)
        total, _, _ = model(inputs)
        total.backward()
        opt.step()
        return total.detach().item()

    for _ in range(a.warmup):
        step()
    setup = time.perf_counter() - t0
    times, losses = [], []
    for _ in range(a.steps):
        t = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t)
    print(json.dumps({"side": "torch", "times": times, "losses": losses, "setup_s": setup,
                      "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "env": {k: os.environ.get(k) for k in
                              ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")},
                      "nice": os.nice(0)}))


# --------------------------------------------------------------------------------------------
# Orchestration (run with the project's Python)
# --------------------------------------------------------------------------------------------

def _child(python, mode, a, timeout=1800, omp_wait=None):
    cmd = [python, str(Path(__file__).resolve()), "--child", mode, "--work", a.work,
           "--prototxt", str(a.prototxt), "--batch", str(a.batch), "--crop", str(a.crop),
           "--steps", str(a.steps), "--warmup", str(a.warmup),
           "--torch-threads", str(a.torch_threads)]
    env = dict(os.environ, GLOG_minloglevel="2")
    if omp_wait == "unset":
        env.pop("OMP_WAIT_POLICY", None)
    elif omp_wait:
        env["OMP_WAIT_POLICY"] = omp_wait
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"compare_pytorch: the {mode} subprocess failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cpu_model():
    """lscpu's model name, with its family/model and the widest x86 vector extension."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown (lscpu failed)"
    info = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    flags = set(info.get("Flags", "").split())
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return (f"{info.get('Model name', 'unknown')} (family {info.get('CPU family', '?')}, model "
            f"{info.get('Model', '?')}, {simd})")


def _sched_note():
    """Where the kernel groups processes by session (autogroup), `nice` only ranks processes of
    the same session: against a build started from another shell it changes nothing, and the
    session's own autogroup nice is what counts."""
    try:
        enabled = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
        group = Path("/proc/self/autogroup").read_text().strip()
    except OSError:
        return None
    if not enabled:
        return None
    note = f"autogroup scheduling on, this session: {group}"
    if os.nice(0) < 0 and group.endswith(" nice 0"):
        note += (" (the negative nice does not rank this run above other sessions; run it as "
                 "setsid sh -c 'echo -10 > /proc/self/autogroup; exec nice -n -10 ...')")
    return note


def _stats(times):
    return {"median": statistics.median(times), "min": min(times), "mean": statistics.fmean(times)}


def orchestrate(a):
    own_work = a.work is None
    a.work = a.work or tempfile.mkdtemp(prefix="compare-pytorch-")
    os.makedirs(a.work, exist_ok=True)
    report = {"cpu": _cpu_model(), "cores": os.cpu_count(), "nice": os.nice(0),
              "batch": a.batch, "crop": a.crop, "steps": a.steps, "warmup": a.warmup,
              "rounds": a.rounds, "torch_threads": a.torch_threads,
              "prototxt": str(a.prototxt), "sched": _sched_note(),
              "load_before": list(os.getloadavg())}
    try:
        prep = _child(a.caffe_python, "caffe-prepare", a)
        desc = json.loads(Path(a.work, "net.json").read_text())
        print(f"net: {a.prototxt} ({len(desc['layers'])} layers, "
              f"{desc['parameters'] / 1e6:.2f} M parameters), input "
              + ", ".join(f"{k} {v}" for k, v in desc["inputs"].items()))
        for n in desc["notes"]:
            print("  " + n)
        if desc["skipped_layers"]:
            print("  not in the TRAIN net: " + ", ".join(desc["skipped_layers"]))
        check = _child(a.torch_python, "torch-check", a)
        report["check"] = check
        print(f"forward loss on Caffe's input batch: pycaffe {check['caffe_total']:.9g}, "
              f"PyTorch {check['torch_total']:.9g}, relative difference {check['rel']:.2e} "
              f"(limit {a.loss_rtol:g})")
        for n, v in check["per_scale"].items():
            print(f"  {n}: pycaffe {v['caffe']:.9g}  PyTorch {v['torch']:.9g}")
        print(f"gradients: largest |g_torch - g_caffe| / max|g_caffe| over all parameter blobs "
              f"{check['grad_worst_rel']:.2e} ({check['grad_worst_param']})")
        if not check["rel"] <= a.loss_rtol:
            raise SystemExit(f"compare_pytorch: the losses differ by {check['rel']:.2e} relative, "
                             f"more than {a.loss_rtol:g}: the translation is wrong, no timing")
        if a.check_only:
            return 0
        sides = [(f"torch[{w}]", w) for w in a.torch_omp_wait] + [("caffe", None)]
        runs = {label: [] for label, _ in sides}
        for r in range(a.rounds):
            for side, wait in sides:
                if side == "caffe":
                    res = _child(a.caffe_python, "caffe-time", a)
                else:
                    res = _child(a.torch_python, "torch-time", a, omp_wait=wait)
                runs[side].append(res)
                print(f"round {r + 1}/{a.rounds} {side:15s}: median "
                      f"{statistics.median(res['times']):.3f} s, min {min(res['times']):.3f} s "
                      f"(setup {res['setup_s']:.1f} s, loss {res['losses'][0]:.5g} -> "
                      f"{res['losses'][-1]:.5g})", flush=True)
        report["load_after"] = list(os.getloadavg())
        report["runs"] = runs
        summary = {}
        for side, rs in runs.items():
            allt = [t for r in rs for t in r["times"]]
            summary[side] = dict(_stats(allt),
                                 round_medians=[statistics.median(r["times"]) for r in rs])
        for side, _ in sides[:-1]:
            st, ca = summary[side], summary["caffe"]
            st["ratio_caffe_median"] = ca["median"] / st["median"]
            st["ratio_caffe_min"] = ca["min"] / st["min"]
        report["summary"] = summary
        cinfo = runs["caffe"][0]
        print()
        print(f"CPU: {report['cpu']} ({report['cores']} logical CPUs), nice {report['nice']}")
        if report["sched"]:
            print(f"  {report['sched']}")
        print("load average before: " + " ".join(f"{v:.2f}" for v in report["load_before"])
              + "   after: " + " ".join(f"{v:.2f}" for v in report["load_after"]))
        print(f"MRFNet train step, batch {a.batch} x {a.crop}x{a.crop}, Adam lr {ADAM['base_lr']:g}; "
              f"{a.rounds} rounds x {a.steps} timed steps per side (after {a.warmup} warm-up), "
              f"alternating PyTorch / Caffe, each in a fresh process")
        for side, wait in sides[:-1]:
            tinfo, st = runs[side][0], summary[side]
            print(f"  PyTorch {tinfo['torch']} ({tinfo['threads']} threads, OMP_WAIT_POLICY "
                  f"{wait}): median {st['median']:.3f} s, min {st['min']:.3f} s; round medians "
                  + " ".join(f"{v:.3f}" for v in st["round_medians"]))
        print(f"  Caffe (pycaffe solver.step, {desc['caffe_dir']}; env {cinfo['env']}): median "
              f"{summary['caffe']['median']:.3f} s, min {summary['caffe']['min']:.3f} s; "
              f"round medians " + " ".join(f"{v:.3f}" for v in summary["caffe"]["round_medians"]))
        for side, _ in sides[:-1]:
            st = summary[side]
            print(f"  Caffe / {side}: {st['ratio_caffe_median']:.2f} (medians), "
                  f"{st['ratio_caffe_min']:.2f} (mins)   (< 1: Caffe faster)")
        if a.json:
            Path(a.json).write_text(json.dumps(report, indent=1))
        return 0
    finally:
        if own_work and not a.keep:
            shutil.rmtree(a.work, ignore_errors=True)
        elif a.work:
            print(f"(work files kept in {a.work})")


def main(argv=None):
    quiet_caffe()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prototxt", type=Path, default=DEFAULT_PROTOTXT,
                   help="the stock-loss train net (default: models/mrfnet/train.prototxt of this "
                        "checkout)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--steps", type=int, default=5, help="timed steps per subprocess (5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (2)")
    p.add_argument("--rounds", type=int, default=3, help="alternating PyTorch/Caffe rounds (3)")
    p.add_argument("--torch-threads", type=int, default=2, help="torch.set_num_threads (2)")
    p.add_argument("--torch-omp-wait", default="PASSIVE",
                   type=lambda v: [w.strip() for w in v.split(",") if w.strip()],
                   help="OMP_WAIT_POLICY of the PyTorch processes: PASSIVE (default; what pycaffe "
                        "sets for Caffe, patch 0004), ACTIVE, or unset (libgomp's default: spin a "
                        "while, then sleep); a comma list times one PyTorch side per value")
    p.add_argument("--torch-python", default=sys.executable,
                   help="a Python with torch and numpy (default: this one)")
    p.add_argument("--caffe-python", default=sys.executable,
                   help="a Python with pycaffe and this project (default: this one)")
    p.add_argument("--loss-rtol", type=float, default=1e-4)
    p.add_argument("--check-only", action="store_true", help="translate and check; no timing")
    p.add_argument("--work", default=None, help="folder for the generated files (default: a "
                                                "temporary one, removed at the end)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--json", default=None, help="also write the results as JSON to this file")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if not a.torch_omp_wait or set(a.torch_omp_wait) - {"PASSIVE", "ACTIVE", "unset"}:
        p.error("--torch-omp-wait takes PASSIVE, ACTIVE and/or unset, comma-separated")
    if a.batch < 1 or a.crop < 1 or a.steps < 1 or a.warmup < 0 or a.rounds < 1:
        p.error("--batch, --crop, --steps and --rounds must be >= 1, --warmup >= 0")
    modes = {"caffe-prepare": caffe_prepare, "caffe-time": caffe_time,
             "torch-check": torch_check, "torch-time": torch_time}
    if a.child:
        modes[a.child](a)
        return 0
    return orchestrate(a)


if __name__ == "__main__":
    sys.exit(main())
