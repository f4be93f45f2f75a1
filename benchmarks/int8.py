"""int8 rows of `make bench`: the int8 ONNX model that `--precision int8` runs, made once per
variant from the run's own fp32 export, and its PSNR cost on validation pairs (`--val DIR`,
a folder with blur/ and sharp/ as `mrfnet pairs` writes; the project's are the validation tiles
of models/mrfnet/MODEL.md). The rule of issue #23 for int8 as the CPU default: mean PSNR within
QUALITY_MEAN_DB of fp32 and no pair moved by more than QUALITY_MAX_DB."""
import time
from pathlib import Path

QUALITY_MEAN_DB = 0.02
QUALITY_MAX_DB = 0.1


def int8_model(deploy, fp32_onnx, workdir, variant, done):
    """(path, seconds) of the int8 model of the fp32 export `fp32_onnx`, calibrated on the
    bundled training photos (inference.quantize), made once per variant (`done`)."""
    from inference.onnx_export import NetGraph
    from inference.quantize import calibration_set, quantize

    if variant not in done:
        t0 = time.perf_counter()
        inputs = calibration_set(None, NetGraph(deploy).stride())[0]
        path = quantize(fp32_onnx, Path(workdir) / f"{variant}-int8.onnx", inputs)
        done[variant] = (str(path), time.perf_counter() - t0)
    return done[variant]


def quality(deploy, fp32_onnx, int8_onnx, val_dir):
    """PSNR of fp32 and int8 ONNX Runtime on the pairs of `val_dir` (whole images, one thread):
    {"pairs", "fp32_psnr", "int8_psnr", "mean_diff_db", "max_abs_diff_db", "worst", "passes"}."""
    import numpy as np

    from data_prep.imageio import read_image_with_notes
    from data_prep.sources import paired_folders
    from inference.backends import load
    from inference.tiling import deblur
    from layers.metrics import psnr

    items = paired_folders(Path(val_dir) / "blur", Path(val_dir) / "sharp")
    nets = {p: load(deploy, f, "onnxruntime", threads=1)
            for p, f in (("fp32", fp32_onnx), ("int8", int8_onnx))}
    scores = {"fp32": [], "int8": []}
    for it in items:
        blur, sharp = read_image_with_notes(it.blur)[0], read_image_with_notes(it.sharp)[0]
        for p, net in nets.items():
            scores[p].append(psnr(deblur(net, blur)[0], sharp))
    a, b = np.array(scores["fp32"]), np.array(scores["int8"])
    d = b - a
    worst = int(np.argmax(np.abs(d)))
    return {"pairs": len(items), "val": Path(val_dir).name, "fp32_psnr": float(a.mean()),
            "int8_psnr": float(b.mean()), "mean_diff_db": float(d.mean()),
            "max_abs_diff_db": float(np.abs(d).max()), "worst": items[worst].name,
            "passes": bool(abs(d.mean()) <= QUALITY_MEAN_DB
                           and np.abs(d).max() <= QUALITY_MAX_DB)}


def markdown(q):
    """The quality section (or a line saying how to measure it)."""
    lines = ["## int8 quality (ONNX Runtime, MRFNet, whole images)", ""]
    if not q:
        return lines + ["Not measured in this run: give validation pairs with "
                        "`make bench VAL=DIR` (`mrfnet bench --val DIR`).", ""]
    verdict = "holds" if q["passes"] else "does NOT hold"
    return lines + [
        f"On {q['pairs']} validation pairs ({q['val']}): fp32 {q['fp32_psnr']:.3f} dB, int8 "
        f"{q['int8_psnr']:.3f} dB: mean {q['mean_diff_db']:+.4f} dB, largest move on one pair "
        f"{q['max_abs_diff_db']:.3f} dB ({q['worst']}). The rule for int8 as the CPU default "
        f"(mean within {QUALITY_MEAN_DB} dB, no pair beyond {QUALITY_MAX_DB} dB) {verdict}.", ""]
