"""The `mrfnet` console command: a thin dispatcher over the project's packages.

Each subcommand lives in the package that owns its work; this file only names them and hands
over the remaining arguments, so that `mrfnet --help` lists everything a user can run.
"""
import argparse
import importlib
import sys

# subcommand -> (module with `add_arguments(parser)` and `run(args)`, one-line help)
COMMANDS = {
    "prototxt": ("prototxt_gen.command", "write train/test/deploy/solver prototxt per variant"),
    "summary": ("prototxt_gen.summary", "parameters, multiply-adds and blob memory per variant"),
    "convert": ("data_prep.command", "render blurred/sharp patches into LMDB or HDF5"),
    "verify": ("data_prep.verify", "re-read an LMDB/HDF5 database and check it"),
    "train": ("solver.command", "train with pycaffe (loss-weight schedule, logs, resume)"),
    "caffe-stages": ("solver.stages", "run `caffe train` stage by stage (loss-weight groups)"),
    "deblur": ("inference.command", "deblur images with a deploy net (pycaffe or OpenCV dnn)"),
    "eval": ("evaluation.command", "PSNR/SSIM and timing on blurred/sharp pairs"),
    "tables": ("evaluation.tables", "write the paper's Tables II-V from our own runs"),
    "demo": ("evaluation.demo", "the main job end to end on bundled photos"),
    "bench": ("evaluation.bench", "benchmarks into docs/benchmarks.md"),
}


def build_parser():
    parser = argparse.ArgumentParser(prog="mrfnet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            p.set_defaults(_missing=True)
            continue
        mod.add_arguments(p)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    if getattr(args, "_missing", False):
        print(f"mrfnet {args.command}: not yet implemented", file=sys.stderr)
        return 3
    mod = importlib.import_module(args._module)
    return mod.run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
