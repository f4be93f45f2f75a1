"""The snapshots of a training run: `snapshots/<variant>_p<P>_iter_<N>.{caffemodel,solverstate}`.

Caffe writes them (solver.snapshot()); this module names them, keeps the latest few, finds the
last good one after a divergence, and makes a moved run directory resumable (a .solverstate
stores the absolute path of its weights as they were written).
"""
from pathlib import Path

from solver.errors import MissingInputError


def _iter_of(path):
    return int(Path(path).stem.rsplit("_iter_", 1)[1])


def _read_state(path):
    """The SolverState message of a .solverstate file (Caffe's protobuf is imported here, not
    at module level, so that resolving a run's options does not load Caffe)."""
    from caffe.proto import caffe_pb2
    st = caffe_pb2.SolverState()
    st.ParseFromString(Path(path).read_bytes())
    return st


def latest_state(run_dir):
    """The .solverstate of the highest iteration in run_dir/snapshots."""
    states = list((Path(run_dir) / "snapshots").glob("*_iter_*.solverstate"))
    if not states:
        raise MissingInputError(f"--resume {run_dir}: no .solverstate in {run_dir}/snapshots")
    return max(states, key=_iter_of)


def state_iter(state):
    """The iteration of the solver state being resumed (0 for a fresh run: state None)."""
    return int(_read_state(state).iter) if state else 0


class Snapshots:
    """The snapshot files of one run directory and their retention (keep the latest `keep`)."""

    def __init__(self, run_dir, variant, paths, keep):
        self.dir = Path(run_dir) / "snapshots"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prefix = self.dir / f"{variant}_p{paths}"
        self.keep = keep

    def state(self, it):
        return Path(f"{self.prefix}_iter_{it}.solverstate")

    def iterations(self):
        return {_iter_of(p) for p in self.dir.glob(f"{self.prefix.name}_iter_*.solverstate")}

    def take(self, solver, it):
        """Snapshot the solver (at iteration `it`), drop all but the latest `keep`; the state."""
        solver.snapshot()
        if self.keep and self.keep > 0:
            for old in sorted(self.iterations())[:-self.keep]:
                for ext in (".caffemodel", ".solverstate"):
                    Path(f"{self.prefix}_iter_{old}{ext}").unlink(missing_ok=True)
        return self.state(it)

    def good_before(self, bad_weights_iter):
        """Latest snapshot older than the weights that gave the non-finite loss (the weights
        after `bad_weights_iter` updates); each older one gave a finite loss afterwards."""
        good = [i for i in self.iterations() if i < bad_weights_iter]
        return self.state(max(good)) if good else None

    def relocated(self, state):
        """A .solverstate whose learned_net points at the .caffemodel beside it, so a moved or
        copied run directory still resumes (Caffe stores the path as it was written)."""
        st = _read_state(state)
        beside = Path(state).with_suffix(".caffemodel")
        if not beside.exists():
            if st.learned_net and Path(st.learned_net).exists():
                return state
            raise MissingInputError(f"--resume {state}: its weights {beside.name} are missing")
        if st.learned_net == str(beside.resolve()):
            return state
        st.learned_net = str(beside.resolve())
        tmp = self.dir / ".resume.solverstate"
        tmp.write_bytes(st.SerializeToString())
        return tmp
