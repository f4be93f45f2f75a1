"""The `mrfnet` console command: a thin dispatcher over the project's packages.

Every user-facing job is a subcommand, one module each in mrfnet/commands/ (`add_arguments(parser)`,
`run(args)`, `EXAMPLE`); those modules read options and call the library packages. This file only
names them, so that `mrfnet --help` lists everything a user can run.
"""
import argparse
import importlib
import sys

from mrfnet.caffe_log import quiet_caffe

# subcommand -> (module in mrfnet.commands, one-line help)
COMMANDS = {
    # nets
    "prototxt": ("prototxt", "write train/test/deploy/solver prototxt per variant"),
    "summary": ("summary", "parameters, multiply-adds and blob memory per variant"),
    "graph": ("graph", "draw a variant's deploy net as a PNG (graphviz)"),
    "doc-tables": ("doc_tables", "print the Markdown tables of docs/architecture.md"),
    # data
    "convert": ("convert", "render blurred/sharp patches into LMDB or HDF5"),
    "pairs": ("pairs", "blur whole photos into blur/ + sharp/ PNG pairs for evaluation"),
    "verify": ("verify", "re-read an LMDB/HDF5 database and check it"),
    # training
    "train": ("train", "train with pycaffe (loss-weight schedule, logs, resume)"),
    "caffe-stages": ("caffe_stages", "run `caffe train` stage by stage (loss-weight groups)"),
    "init-weights": ("init_weights", "write a freshly initialised net as a .caffemodel"),
    "learning-curve": ("learning_curve", "held-out PSNR gain against training hours over runs"),
    "measure": ("measure", "seconds per training iteration and peak memory of a setting"),
    # using a model
    "deblur": ("deblur", "deblur images with a deploy net (ONNX Runtime, OpenCV dnn or pycaffe)"),
    "export": ("export", "write a deploy net and its weights as an ONNX model"),
    "eval": ("eval", "PSNR/SSIM and timing on blurred/sharp pairs"),
    "model-report": ("model_report", "the evaluation tables of a model card (MODEL.md)"),
    "tables": ("tables", "write the paper's Tables II-V from our own runs"),
    # whole jobs
    "demo": ("demo", "the main job end to end on bundled photos (make demo)"),
    "bench": ("bench", "benchmarks into docs/benchmarks.md (make bench)"),
    "bench-data": ("bench_data", "throughput and disk cost of the LMDB/HDF5 writers"),
}


def _module(name):
    return importlib.import_module(f"mrfnet.commands.{COMMANDS[name][0]}")


def build_parser(selected=None):
    """The parser; only the `selected` subcommand's module is imported (so that, for example,
    `mrfnet deblur --backend opencv` runs where Caffe is not built)."""
    parser = argparse.ArgumentParser(prog="mrfnet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == selected:
            module = _module(name)
            p.epilog = "example:\n" + "\n".join(f"  {line}" for line in
                                                 module.EXAMPLE.strip().splitlines())
            module.add_arguments(p)
    return parser


def _selected(argv):
    """The subcommand named on the command line, if any (the first word that is one)."""
    return next((a for a in argv if a in COMMANDS), None)


def main(argv=None):
    quiet_caffe()
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_selected(argv))
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    return _module(args.command).run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
