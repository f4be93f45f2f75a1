"""The paper's Tables II-V from our runs (`mrfnet tables --runs DIR... --out docs/tables.md`).

Layout as in the paper (methods/variants as rows, GOPRO and VisDrone columns; datasets of ours
with other labels get extra columns). The paper's own numbers stand in rows marked "(paper)";
every number of ours carries a footnote [n] naming the run file it came from (path relative to
the output file), with the run's SSIM definition, backend, device and image count. When several
runs fit one cell, the newest ("created") is used and the footnote says how many there were.
"""
import os
from pathlib import Path

from inference.models import VARIANTS, title

from . import paper
from .runs import EVAL_SCHEMA, MEMORY_SCHEMA

REFERENCE_BACKEND = "caffe"


def dataset_column(label):
    """Our dataset label -> the paper's column name, or the label itself."""
    low = label.lower()
    for name in paper.DATASETS:
        if low == name.lower() or low.startswith(name.lower() + "_"):
            return name
    return label


class Notes:
    """Footnotes: one per run file, numbered in order of first use."""

    def __init__(self, out_path):
        self.base = Path(out_path).resolve().parent
        self.items = {}

    def ref(self, run, detail, alternatives=1):
        path = Path(run["_path"]).resolve()
        rel = os.path.relpath(path, self.base)
        key = (rel, detail)
        if key not in self.items:
            extra = f"; newest of {alternatives} matching runs" if alternatives > 1 else ""
            self.items[key] = (len(self.items) + 1, f"`{rel}` ({detail}, created "
                                                     f"{run.get('created', '?')}{extra})")
        return f"[{self.items[key][0]}]"

    def render(self):
        return "\n".join(f"[{n}] {text}  " for n, text in sorted(self.items.values()))


def _newest(runs):
    """The run to show: MATLAB-SSIM runs first (the paper's measure), then the newest."""
    return max(runs, key=lambda r: (r.get("ssim_variant", "matlab3d") == "matlab3d",
                                    r.get("created", ""), r["_path"]))


def _eval_detail(run, backend):
    res = run["results"][backend]
    dev = f" {res['device']}" if res.get("device") else ""
    paths = f", P={run['paths']}" if run.get("paths") else ""
    return (f"{run['n_images']} images of {run['dataset']}, SSIM {run['ssim_variant']}, "
            f"{backend}{dev}{paths}")


def _pick(evals, variant, column, backend=None):
    """Newest eval run of `variant` whose dataset maps to `column` (and has `backend`)."""
    found = [r for r in evals if r["variant"] == variant and dataset_column(r["dataset"]) == column
             and (backend is None or backend in r["results"])]
    return (_newest(found), len(found)) if found else (None, 0)


def _score_backend(run):
    return REFERENCE_BACKEND if REFERENCE_BACKEND in run["results"] else next(iter(run["results"]))


def _ssim_cell(value, run):
    tag = "" if run["ssim_variant"] == "matlab3d" else f" ({run['ssim_variant']})"
    return f"{value:.4f}{tag}"


def _columns(evals):
    ours = sorted({dataset_column(r["dataset"]) for r in evals} - set(paper.DATASETS))
    return list(paper.DATASETS) + ours


def _row(cells):
    return "| " + " | ".join(cells) + " |"


def _header(first, columns, sub):
    top = [first] + [f"{c} {s}" for c in columns for s in sub]
    return [_row(top), _row(["---"] * len(top))]


def _score_rows(evals, notes, columns, variants, label):
    rows = []
    for v in variants:
        cells = []
        for col in columns:
            run, n = _pick(evals, v, col)
            if run is None:
                cells += ["-", "-"]
                continue
            b = _score_backend(run)
            res, ref = run["results"][b], notes.ref(run, _eval_detail(run, b), n)
            cells += [f"{res['psnr']:.2f} {ref}", f"{_ssim_cell(res['ssim'], run)} {ref}"]
        if any(c != "-" for c in cells):
            rows.append(_row([label(v)] + cells))
    return rows


def _baseline_row(evals, notes, columns):
    cells = []
    for col in columns:
        found = [r for r in evals if dataset_column(r["dataset"]) == col]
        if not found:
            cells += ["-", "-"]
            continue
        run = _newest(found)
        ref = notes.ref(run, f"blurred input of {run['n_images']} images of {run['dataset']}, "
                             f"SSIM {run['ssim_variant']}", len(found))
        cells += [f"{run['baseline']['psnr']:.2f} {ref}",
                  f"{_ssim_cell(run['baseline']['ssim'], run)} {ref}"]
    return [_row(["Blurred input, no deblurring (ours)"] + cells)]


def table_ii(evals, notes):
    columns = _columns(evals)
    lines = ["## Table II. PSNR and SSIM of deblurring methods", ""]
    lines += _header("Method", columns, ("PSNR", "SSIM"))
    for method, vals in paper.TABLE_II.items():
        cells = []
        for col in columns:
            p = vals.get(col)
            cells += [f"{p[0]:.5f}", f"{p[1]:.6f}"] if p else ["", ""]
        lines.append(_row([f"{method} (paper)"] + cells))
    lines += _score_rows(evals, notes, columns, ["mrfnet"], lambda v: f"{title(v)} (ours)")
    if evals:
        lines += _baseline_row(evals, notes, columns)
    return lines


def table_iii(mems, notes):
    b8, b16 = paper.TABLE_III_BATCHES
    lines = ["## Table III. Memory of training (network + batch)", "",
             _row(["Method", f"GOPRO: Network(MB)+Batch({b8})",
                   f"VisDrone: Network(MB)+Batch({b16})"]), _row(["---"] * 3)]
    for method, vals in paper.TABLE_III.items():
        lines.append(_row([f"{method} (paper, GPU MB)"] + [str(v) for v in vals]))
    for v in VARIANTS:
        found = [r for r in mems if r["variant"] == v]
        if not found:
            continue
        run = _newest(found)
        cells = []
        for batch in (b8, b16):
            res = [x for x in run["results"] if x.get("batch") == batch]
            if not res:
                cells.append("-")
                continue
            x = res[0]
            detail = (f"peak RSS of CPU training, crop {x.get('crop')}, P={x.get('paths')}, "
                      f"{x.get('iters')} iterations")
            ref = notes.ref(run, detail, len(found))
            if "error" in x:
                cells.append(f"failed (see run file) {ref}")
            else:
                cells.append(f"{x['peak_rss_mb']:.0f} (net+batch {x['net_batch_mb']:.0f}) {ref}")
        lines.append(_row([f"{title(v)} (ours, CPU peak RSS MB)"] + cells))
    lines += ["", "The paper measured GPU memory. Ours: peak resident memory (VmHWM) of a CPU "
                  "process running Adam training steps of the stock train net on 256x256 crops "
                  "(evaluation/memory.py); \"net+batch\" subtracts the process's RSS just before "
                  "the net was built (Python, numpy and Caffe loaded)."]
    return lines


def table_iv(evals, notes):
    columns = _columns(evals)
    sizes = paper.TABLE_IV_SIZES
    lines = ["## Table IV. Average time of inferring one image (model load + forward)", "",
             _row(["Method"] + [f"{c} InferTime(s)" for c in columns]),
             _row(["---"] * (len(columns) + 1))]
    for method, vals in paper.TABLE_IV.items():
        cells = [str(vals[paper.DATASETS.index(c)]) if c in paper.DATASETS else ""
                 for c in columns]
        lines.append(_row([f"{method} (paper, GPU)"] + cells))
    backends = sorted({b for r in evals if not r.get("identity") for b in r["results"]})
    for v in VARIANTS:
        for b in backends:
            cells = []
            for col in columns:
                run, n = _pick(evals, v, col, b)
                if run is None or run["results"][b].get("forward_mean_s") is None:
                    cells.append("-")
                    continue
                res = run["results"][b]
                size = "/".join("x".join(str(d) for d in s[::-1]) for s in res["image_sizes"])
                ref = notes.ref(run, _eval_detail(run, b) + f", images {size}", n)
                total = res["load_s"] + res["forward_mean_s"]
                cells.append(f"{total:.3f} (load {res['load_s']:.3f} + forward "
                             f"{res['forward_mean_s']:.3f}) {ref}")
            if any(c != "-" for c in cells):
                dev = next((r["results"][b].get("device", "") for r in evals
                            if b in r["results"]), "")
                lines.append(_row([f"{title(v)} (ours, {b} {dev})".replace(" )", ")")] + cells))
    lines += ["", f"Paper's image sizes: GOPRO {sizes['GOPRO'][1]}x{sizes['GOPRO'][0]}, "
                  f"VisDrone {sizes['VisDrone'][1]}x{sizes['VisDrone'][0]}, on a GTX1650 GPU. "
                  "Ours: wall time on this machine's CPU (the sizes are in each footnote), "
                  "forward = mean over images after one warm-up image."]
    return lines


def table_v(evals, notes):
    columns = _columns(evals)
    lines = ["## Table V. Ablation: PSNR and SSIM of the variants", ""]
    lines += _header("Method", columns, ("PSNR", "SSIM"))
    for v in VARIANTS:
        vals = paper.TABLE_V[v]
        cells = []
        for col in columns:
            p = vals.get(col)
            cells += [f"{p[0]:.5f}", f"{p[1]:.6f}"] if p else ["", ""]
        lines.append(_row([f"{title(v)} (paper)"] + cells))
    lines += _score_rows(evals, notes, columns, VARIANTS, lambda v: f"{title(v)} (ours)")
    return lines


def render(runs, out_path):
    """Markdown text of Tables II-V from run dicts (see evaluation.runs)."""
    evals = [r for r in runs if r["schema"] == EVAL_SCHEMA]
    mems = [r for r in runs if r["schema"] == MEMORY_SCHEMA]
    notes = Notes(out_path)
    parts = [
        "# The paper's Tables II-V, with our numbers",
        "",
        "Written by `mrfnet tables`; do not edit by hand. Rows marked \"(paper)\" are the MRFNet "
        "paper's own numbers (its protocol is not stated; GPU). Rows marked \"(ours)\" come "
        "from our run files, each cell's footnote names the file. SSIM is MATLAB's 3-D SSIM on "
        "RGB uint8 unless a cell says otherwise; PSNR on RGB uint8.",
        "",
    ]
    for table in (table_ii(evals, notes), table_iii(mems, notes), table_iv(evals, notes),
                  table_v(evals, notes)):
        parts += table + [""]
    parts += ["## Sources of our numbers", "", notes.render() or "(no runs found)", ""]
    return "\n".join(parts)
