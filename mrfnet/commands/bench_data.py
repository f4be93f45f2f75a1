"""`mrfnet bench-data`: throughput of the LMDB and HDF5 writers alone and of the whole pipeline
(render + write, as `mrfnet convert`) on the bundled photos, and their disk cost per patch
(data_prep.bench); prints JSON. A benchmark: the figures depend on the machine's load."""
import json
import os

from data_prep.bench import measure_convert, measure_writers

EXAMPLE = """
mrfnet bench-data --patches 96 --crop 256
"""


def add_arguments(p):
    p.add_argument("--patches", type=int, default=96)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--crops", type=int, default=8, help="renders per bundled photo in the pipeline run")
    p.add_argument("--workers", type=int, default=2)


def run(args):
    out = {"load_average": os.getloadavg(), "cpus": os.cpu_count(),
           "writers_only": measure_writers(args.patches, args.crop),
           "render_and_write": measure_convert(args.crops, args.crop, args.workers)}
    print(json.dumps(out, indent=2))
    return 0
