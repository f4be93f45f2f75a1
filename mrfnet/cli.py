"""The `mrfnet` console command: a thin dispatcher over the project's packages.

Each subcommand lives in the package that owns its work; this file only names them and hands
over the remaining arguments, so that `mrfnet --help` lists everything a user can run.
"""
import argparse
import importlib
import sys

from mrfnet.caffe_log import quiet_caffe

# subcommand -> (module with `add_arguments(parser)` and `run(args)`, one-line help)
COMMANDS = {
    "prototxt": ("prototxt_gen.command", "write train/test/deploy/solver prototxt per variant"),
    "summary": ("prototxt_gen.summary", "parameters, multiply-adds and blob memory per variant"),
    "convert": ("data_prep.command", "render blurred/sharp patches into LMDB or HDF5"),
    "pairs": ("data_prep.pairs", "blur whole photos into blur/ + sharp/ PNG pairs for evaluation"),
    "verify": ("data_prep.verify", "re-read an LMDB/HDF5 database and check it"),
    "train": ("solver.command", "train with pycaffe (loss-weight schedule, logs, resume)"),
    "caffe-stages": ("solver.stages", "run `caffe train` stage by stage (loss-weight groups)"),
    "deblur": ("inference.command",
               "deblur images with a deploy net (ONNX Runtime, OpenCV dnn or pycaffe)"),
    "export": ("inference.export_command", "write a deploy net and its weights as an ONNX model"),
    "eval": ("evaluation.command", "PSNR/SSIM and timing on blurred/sharp pairs"),
    "tables": ("evaluation.tables", "write the paper's Tables II-V from our own runs"),
    "demo": ("evaluation.demo", "the main job end to end on bundled photos"),
    "bench": ("evaluation.bench", "benchmarks into docs/benchmarks.md"),
}


def build_parser(selected=None):
    """The parser; only the `selected` subcommand's module is imported (so that, for example,
    `mrfnet deblur --backend opencv` runs where Caffe is not built)."""
    parser = argparse.ArgumentParser(prog="mrfnet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if name == selected:
            importlib.import_module(module).add_arguments(p)
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
    return importlib.import_module(args._module).run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
