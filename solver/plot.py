"""Loss curves from a train_log.jsonl, drawn like the paper's Fig. 5 (training loss against
epochs), plus the per-scale terms, the loss-weight group switches and validation PSNR/SSIM."""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from solver.runlog import read_log  # noqa: E402


def _num(v):
    try:
        v = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return v


def _smooth(y, n):
    if n <= 1 or len(y) < n:
        return y
    kernel = np.ones(n) / n
    pad = np.concatenate([np.full(n - 1, y[0]), y])
    return np.convolve(pad, kernel, mode="valid")


def plot_log(log_path, png_path, iterations_per_epoch=None, group_starts=(), title=None):
    """Write the PNG and return its path; x axis in epochs when iterations_per_epoch is given."""
    recs = read_log(log_path)
    train = [r for r in recs if r.get("kind") == "train"]
    val = [r for r in recs if r.get("kind") == "val"]
    scale = float(iterations_per_epoch) if iterations_per_epoch else 1.0
    xlabel = "epoch" if iterations_per_epoch else "iteration"

    fig, (ax, axv) = plt.subplots(2, 1, figsize=(8, 7), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 2]})
    if train:
        it = np.array([r["iteration"] for r in train], dtype=float) / scale
        total = np.array([_num(r.get("loss")) for r in train])
        ax.plot(it, total, color="0.75", lw=0.8, label="total loss (eq. 5)")
        ax.plot(it, _smooth(total, max(1, len(total) // 50)), color="k", lw=1.6,
                label="total loss, smoothed")
        keys = sorted({k for r in train for k in r if k.startswith("loss_r")},
                      key=lambda k: int(k[6:]))
        colors = plt.cm.viridis(np.linspace(0, 0.9, max(1, len(keys))))
        for c, k in zip(colors, keys):
            y = np.array([_num(r.get(k)) for r in train])
            ax.plot(it, _smooth(y, max(1, len(y) // 50)), color=c, lw=1.0, ls="--",
                    label=f"{k[5:]} term (unweighted)")
        finite = total[np.isfinite(total) & (total > 0)]
        if finite.size and finite.max() / max(finite.min(), 1e-30) > 20:
            ax.set_yscale("log")
    for s in group_starts:
        for a in (ax, axv):
            a.axvline(s / scale, color="tab:red", lw=0.8, ls=":")
    if group_starts:
        ax.plot([], [], color="tab:red", lw=0.8, ls=":", label="loss-weight group switch")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(title or "training loss (cf. paper Fig. 5)")

    if val:
        vx = np.array([r["iteration"] for r in val], dtype=float) / scale
        psnr = np.array([_num(r.get("psnr")) for r in val])
        axv.plot(vx, psnr, "o-", color="tab:blue", ms=3, label="val PSNR (dB)")
        axv.set_ylabel("PSNR (dB)", color="tab:blue")
        ax2 = axv.twinx()
        ax2.plot(vx, [_num(r.get("ssim")) for r in val], "s--", color="tab:orange", ms=3,
                 label="val SSIM")
        ax2.set_ylabel("SSIM", color="tab:orange")
        base = [r for r in val if "input_psnr" in r]
        if base:
            axv.axhline(_num(base[0]["input_psnr"]), color="0.5", ls="--", lw=0.8,
                        label="blurred input PSNR")
        best = [r for r in val if r.get("best")]
        if best:
            b = best[-1]
            axv.plot([b["iteration"] / scale], [_num(b.get("psnr"))], "*", color="tab:red", ms=12,
                     label="best (best.caffemodel)")
        axv.legend(fontsize=8, loc="lower right")
    else:
        axv.text(0.5, 0.5, "no validation yet", ha="center", va="center", transform=axv.transAxes)
    axv.set_xlabel(xlabel)
    axv.grid(alpha=0.3)
    return save_figure(fig, png_path)


def save_figure(fig, png_path):
    """Write a figure atomically (a reader never sees half a PNG) and close it."""
    fig.tight_layout()
    tmp = os.fspath(png_path) + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, png_path)
    return png_path

