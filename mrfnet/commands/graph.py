"""`mrfnet graph`: a readable picture of a variant's deploy net (prototxt_gen.graph's DOT, drawn
by graphviz `dot`), with blob shapes from the real caffe.Net."""
import re
import subprocess
import sys

from prototxt_gen import nets
from prototxt_gen import topology as T
from prototxt_gen.caffe_net import load
from prototxt_gen.graph import render, to_dot

EXAMPLE = """
mrfnet graph --variant mrfnet --paths 4 --size 256 --out docs/img/mrfnet_p4.png
"""


def add_arguments(p):
    p.add_argument("--variant", default=T.DEFAULT_VARIANT, choices=T.VARIANTS)
    p.add_argument("--paths", type=int, default=T.DEFAULT_PATHS)
    p.add_argument("--size", type=int, default=256, help="square input size for the shapes")
    p.add_argument("--out", required=True, help="PNG file to write (.dot is written beside it)")


def run(args):
    try:
        net = nets.deploy_net(args.variant, args.paths, args.size, args.size)
        live = load(net)
        shapes = {name: tuple(b.shape) for name, b in live.blobs.items()}
        title = (f"{T.VARIANT_SPECS[args.variant].title}, {args.paths} paths, deploy net at "
                 f"{args.size}x{args.size} (name, kernel/stride, outputs; output CxHxW)")
        dot = to_dot(net, shapes, title)
        with open(re.sub(r"\.png$", "", args.out) + ".dot", "w") as f:
            f.write(dot)
        render(dot, args.out)
    except (ValueError, OSError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(args.out)
    return 0
