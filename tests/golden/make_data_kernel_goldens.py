"""Regenerate tests/golden/data_kernels.json (run once by hand; the tests never need Octave).

    python tests/golden/make_data_kernel_goldens.py      # needs GNU Octave + octave-image

What comes from where:
- "gaussian": fspecial('gaussian', hsize, sigma) from GNU Octave's image package, for every hsize
  in 1..5 and sigma in 0.1..1.0 (Octave agrees with MATLAB's documented algorithm here, apart
  from MATLAB zeroing entries below eps*max, a difference far below the test tolerance).
- "imfilter": Octave's imfilter(uint8 image, psf, 'replicate', 'conv') on a fixed 13x11x3 test
  image for Gaussian kernels (odd and even sizes), motion kernels (made by data_prep.kernels
  and handed to Octave as numbers: Octave's own fspecial('motion') is not MATLAB's), and
  asymmetric even-sized kernels that pin the convolution origin and orientation.
- "motion": shape, sum, number of non-zeros and the centre value of data_prep.kernels
  fspecial_motion for every (len, theta) of the recipe grid: a regression record, checked in the
  tests together with independent properties (sum 1, point symmetry, axis angle, hand-derived values).
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from data_prep.kernels import fspecial_motion  # noqa: E402

OUT = Path(__file__).resolve().parent / "data_kernels.json"


def test_image():
    """The fixed uint8 test image (rebuilt identically by the tests)."""
    h, w = 13, 11
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    return ((x * 37 + y * 91 + c * 53 + (x * y) % 7 * 29) % 256).astype(np.uint8)


def octave(script):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.m"
        path.write_text("pkg load image\n" + script)
        out = subprocess.run(["octave", "--no-gui", "--quiet", str(path)], check=True,
                             capture_output=True, text=True).stdout
    return out


def mat(a):
    a = np.asarray(a, dtype=np.float64)
    rows = ";".join(" ".join(repr(float(v)) for v in row) for row in a)
    return f"[{rows}]"


def main():
    goldens = {"gaussian": [], "imfilter": [], "motion": []}
    script = ["format long"]
    for hsize in range(1, 6):
        for k in range(1, 11):
            script.append(f"disp(mat2str(fspecial('gaussian', {hsize}, {k / 10!r}), 17))")
    lines = octave("\n".join(script)).strip().splitlines()
    it = iter(lines)
    for hsize in range(1, 6):
        for k in range(1, 11):
            text = next(it).strip().strip("[]")
            vals = [[float(v) for v in row.split()] for row in text.split(";")]
            goldens["gaussian"].append({"hsize": hsize, "sigma": k / 10, "kernel": vals})

    img = test_image()
    kernels = []
    for hsize, sigma in [(1, 0.5), (2, 0.5), (2, 1.0), (3, 0.7), (4, 0.3), (4, 1.0), (5, 1.0)]:
        kernels.append((f"gaussian {hsize} {sigma}", f"fspecial('gaussian', {hsize}, {sigma!r})", None))
    for length, theta in [(5, 0), (5, 45), (10, 90), (15, 120), (30, 15), (25, 300)]:
        k = fspecial_motion(length, theta)
        kernels.append((f"motion {length} {theta}", mat(k), k.tolist()))
    kernels.append(("asym 2x2", mat([[0.1, 0.2], [0.3, 0.4]]), [[0.1, 0.2], [0.3, 0.4]]))
    asym = [[0.05, 0.0, 0.1, 0.2], [0.0, 0.3, 0.0, 0.05], [0.15, 0.0, 0.1, 0.05]]
    kernels.append(("asym 3x4", mat(asym), asym))
    script = ["img = uint8(zeros(13, 11, 3));"]
    for c in range(3):
        script.append(f"img(:, :, {c + 1}) = {mat(img[:, :, c])};")
    for name, expr, _ in kernels:
        script.append(f"r = imfilter(img, {expr}, 'replicate', 'conv');")
        script.append("for c = 1:3, disp(mat2str(double(r(:, :, c)))); end")
    lines = octave("\n".join(script)).strip().splitlines()
    for i, (name, expr, values) in enumerate(kernels):
        chans = []
        for c in range(3):
            text = lines[3 * i + c].strip().strip("[]")
            chans.append([[int(float(v)) for v in row.split()] for row in text.split(";")])
        result = np.transpose(np.array(chans), (1, 2, 0))
        goldens["imfilter"].append({"name": name, "octave_kernel": expr if values is None else None,
                                    "kernel": values, "result": result.tolist()})

    for length in range(5, 31, 5):
        for theta in range(0, 346, 15):
            k = fspecial_motion(length, theta)
            goldens["motion"].append({"len": length, "theta": theta, "shape": list(k.shape),
                                      "sum": float(k.sum()), "nonzeros": int(np.count_nonzero(k)),
                                      "centre": float(k[k.shape[0] // 2, k.shape[1] // 2])})
    OUT.write_text(json.dumps(goldens, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
