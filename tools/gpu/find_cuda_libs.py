"""Print the folders that hold the given CUDA libraries, ':'-joined, for LD_LIBRARY_PATH.

    python3 tools/gpu/find_cuda_libs.py libcudart.so.13 libcublas.so.13 ...

Looks in the nvidia-* packages of this Python (site-packages/nvidia/*/lib: PyTorch's CUDA
wheels, on the lent GPU machine), then in $CUDA_HOME/lib64 (default /usr/local/cuda). The
driver's libcuda.so.1 is the system's and is not looked for. Exit status 1, naming what is
missing and where it looked, when one is not found. Standard library only."""
import glob
import os
import site
import sys


def candidates():
    roots = []
    for p in sys.path + site.getsitepackages() + [site.getusersitepackages()]:
        if p and os.path.isdir(p) and p not in roots:
            roots.append(p)
    dirs = [d for r in roots for d in sorted(glob.glob(os.path.join(r, "nvidia", "*", "lib")))]
    return dirs + [os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "lib64")]


def find(names):
    cands = candidates()
    dirs, missing = [], []
    for name in names:
        if name.startswith("libcuda.so"):
            continue
        hit = next((d for d in cands if os.path.exists(os.path.join(d, name))), None)
        if hit is None:
            missing.append(name)
        elif hit not in dirs:
            dirs.append(hit)
    return dirs, missing, cands


def main(argv):
    dirs, missing, cands = find(argv)
    if missing:
        print(f"missing CUDA libraries: {', '.join(missing)} (looked in {', '.join(cands)})", file=sys.stderr)
        return 1
    print(":".join(dirs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
