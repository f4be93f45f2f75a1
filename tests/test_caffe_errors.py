"""Caffe patch 0006 (tools/caffe/patches/0006-caffe-tool-input-errors.patch): handed bad input,
the real `caffe` tool (the venv's bin/caffe, as a user runs it) stops with exit status 1 and one
message that names the file and says what to do, never a failed CHECK's stack trace.

Each case runs `caffe train/test/time` in a subprocess from a temporary copy of the repository's
models/ (the committed nets, solver and caffemodel) with small LMDB/HDF5 data made here; the
working runs beside them show that input which passes the checks trains and scores as before.
"""
import os
import shutil
import subprocess
from pathlib import Path

import h5py
import lmdb
import numpy as np
import pytest

from caffe.proto import caffe_pb2

REPO = Path(__file__).resolve().parents[1]
STACK = "Check failure stack trace"
SOLVER = "models/mrfnet/solver.prototxt"
WEIGHTS = "models/mrfnet/mrfnet.caffemodel"


@pytest.fixture
def repo(tmp_path):
    """A copy of the repository's models/ in a fresh folder, where caffe runs."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "models", root / "models")
    return root


@pytest.fixture
def env(venv_bin):
    e = dict(os.environ)
    e["PATH"] = f"{venv_bin}{os.pathsep}{e.get('PATH', '')}"
    e.pop("GLOG_minloglevel", None)   # Caffe's own log, as a user sees it
    e["OMP_NUM_THREADS"] = "1"
    return e


def _caffe(cwd, env, *args, timeout=300):
    r = subprocess.run(["caffe", *args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def _fails(cwd, env, *args, names=()):
    """Run caffe; it must exit 1 with one 'caffe: ' message naming each of `names`."""
    rc, out = _caffe(cwd, env, *args)
    assert STACK not in out, out[-3000:]
    assert rc == 1, f"caffe {' '.join(args)} exited {rc}:\n{out[-3000:]}"
    lines = out.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("caffe: ")]
    assert len(starts) == 1, out[-3000:]
    message = "\n".join(lines[starts[0]:])
    for name in names:
        assert name in message, f"{name!r} not in:\n{message}"
    return message


def _write_lmdb(path, records, side=256):
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i in range(records):
            datum = caffe_pb2.Datum(channels=6, height=side, width=side,
                                    data=np.full((6, side, side), 7 * i, np.uint8).tobytes())
            txn.put(b"%08d" % i, datum.SerializeToString())
    env.close()


def _edit(repo, src, dst, *replacements):
    text = (repo / src).read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    (repo / dst).write_text(text)
    return dst


# a train net and solver small enough to train in a second: crop 32, batch 1, one iteration,
# no test net, snapshots into snap/
TINY = (("crop_size: 256", "crop_size: 32"), ("batch_size: 16", "batch_size: 1"))


def _tiny_solver(repo, name="tiny", net_edits=()):
    _edit(repo, "models/mrfnet/train.prototxt", f"{name}_train.prototxt", *TINY, *net_edits)
    text = (repo / SOLVER).read_text()
    text = text.replace("models/mrfnet/train.prototxt", f"{name}_train.prototxt")
    text = text.replace("results/mrfnet/deblur_mrfnet_", "snap/tiny")
    text = text.replace("max_iter: 50000", "max_iter: 1")
    text = "\n".join(line for line in text.splitlines() if not line.startswith("test_"))
    (repo / f"{name}_solver.prototxt").write_text(text + "\n")
    return f"{name}_solver.prototxt"


# ---------------------------------------------------------------- the README's first run

def test_train_before_convert_names_the_lmdb_and_the_command_that_makes_it(repo, env):
    msg = _fails(repo, env, "train", "-solver", SOLVER,
                 names=("models/mrfnet/train.prototxt", "layer 'pair'", "data/train_lmdb",
                        "does not exist", "mrfnet convert --out data"))
    assert str(repo) in msg   # where relative paths start


def test_test_before_convert_names_the_test_lmdb(repo, env):
    _fails(repo, env, "test", "-model", "models/mrfnet/test.prototxt", "-weights", WEIGHTS,
           names=("models/mrfnet/test.prototxt", "data/test_lmdb", "mrfnet convert --out data"))


# ---------------------------------------------------------------- LMDB sources

def test_empty_lmdb(repo, env):
    (repo / "data").mkdir()
    _write_lmdb(repo / "data" / "train_lmdb", 0)
    _fails(repo, env, "train", "-solver", SOLVER, names=("data/train_lmdb", "is empty"))


@pytest.mark.parametrize("kind", ["file", "folder without data.mdb", "garbage data.mdb"])
def test_source_that_is_not_an_lmdb(repo, env, kind):
    src = repo / "data" / "train_lmdb"
    if kind == "file":
        src.parent.mkdir()
        src.write_text("not a database\n")
    else:
        src.mkdir(parents=True)
        if kind == "garbage data.mdb":
            (src / "data.mdb").write_bytes(os.urandom(20000))
    msg = _fails(repo, env, "train", "-solver", SOLVER,
                 names=("models/mrfnet/train.prototxt", "data/train_lmdb", "not", "LMDB"))
    assert "mrfnet convert --out data" in msg


def test_images_smaller_than_the_crop(test_data, env):
    # data/train_lmdb holds 32x32 pairs; the committed train net crops 256x256
    _fails(test_data, env, "train", "-solver", SOLVER,
           names=("models/mrfnet/train.prototxt", "layer 'pair'", "crops 256x256",
                  "data/train_lmdb", "32x32", "mrfnet convert --crop-size"))


def test_leveldb_backend_this_build_lacks(repo, env):
    net = _edit(repo, "models/mrfnet/test.prototxt", "ldb.prototxt",
                ("backend: LMDB", "backend: LEVELDB"))
    _fails(repo, env, "time", "-model", net, names=(net, "LevelDB", "backend: LMDB"))


# ---------------------------------------------------------------- HDF5Data sources

def _h5(path, rows=4, side=8, names=("data", "label"), label_rows=None):
    with h5py.File(path, "w") as f:
        for name in names:
            n = label_rows if (name == "label" and label_rows) else rows
            f[name] = np.zeros((n, 3, side, side), np.float32)


@pytest.mark.parametrize("case", ["no list", "empty list", "listed file missing", "not HDF5",
                                  "dataset missing", "rows differ", "shapes differ"])
def test_hdf5_data_problems(repo, env, case):
    net = _edit(repo, "models/mrfnet/train_hdf5.prototxt", "h5.prototxt",
                ("data/train_hdf5.txt", "data/list.txt"))
    data = repo / "data"
    data.mkdir()
    listed, names = ["data/a.h5"], ["data/list.txt"]
    _h5(data / "a.h5")
    if case == "listed file missing":
        listed.append("data/missing.h5")
        names = ["data/missing.h5", "entry 2 of data/list.txt", "no such file"]
    elif case == "not HDF5":
        (data / "b.h5").write_text("text\n")
        listed.append("data/b.h5")
        names = ["data/b.h5", "not an HDF5 file"]
    elif case == "dataset missing":
        _h5(data / "a.h5", names=("data", "sharp"))
        names = ["data/a.h5", "no dataset 'label'", "data, sharp"]
    elif case == "rows differ":
        _h5(data / "a.h5", label_rows=5)
        names = ["data/a.h5", "'label' has 5 rows and 'data' has 4"]
    elif case == "shapes differ":
        _h5(data / "b.h5", side=16)
        listed.append("data/b.h5")
        names = ["data/b.h5", "3 x 16 x 16", "3 x 8 x 8", "data/a.h5"]
    elif case == "empty list":
        listed = []
        names = ["data/list.txt", "lists no HDF5 file"]
    if case != "no list":
        (data / "list.txt").write_text("".join(f"{p}\n" for p in listed))
    else:
        names = ["h5.prototxt", "layer 'data' (HDF5Data)", "data/list.txt", "does not exist",
                 "mrfnet convert --format hdf5 --out data"]
    _fails(repo, env, "time", "-model", net, "-iterations", "1", names=names)


# ---------------------------------------------------------------- prototxt files

def test_missing_solver_and_model(repo, env):
    _fails(repo, env, "train", "-solver", "models/mrfnet/nope.prototxt",
           names=("-solver models/mrfnet/nope.prototxt", "no such file", str(repo)))
    _fails(repo, env, "time", "-model", "nope.prototxt",
           names=("-model nope.prototxt", "no such file"))
    _fails(repo, env, "train", names=("-solver",))


def test_solver_that_does_not_parse_keeps_line_and_column(repo, env):
    solver = _edit(repo, SOLVER, "typo_solver.prototxt", ("base_lr:", "bas_lr:"))
    lines = (repo / solver).read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "bas_lr" in text)
    _fails(repo, env, "train", "-solver", solver,
           names=(f"typo_solver.prototxt:{line}:", 'no field named "bas_lr"', "-solver"))


def test_solver_naming_a_missing_net(repo, env):
    solver = _edit(repo, SOLVER, "s.prototxt",
                   ("models/mrfnet/train.prototxt", "models/mrfnet/gone.prototxt"))
    _fails(repo, env, "train", "-solver", solver,
           names=("models/mrfnet/gone.prototxt", "named by s.prototxt", "no such file"))


def test_net_that_does_not_parse_and_a_solver_given_as_model(repo, env):
    net = _edit(repo, "models/mrfnet/test.prototxt", "bad.prototxt", ('top: "data"', 'top: "data'))
    _fails(repo, env, "test", "-model", net, "-weights", WEIGHTS,
           names=("bad.prototxt:", "caffe.NetParameter", "correct that line"))
    _fails(repo, env, "time", "-model", SOLVER, names=(SOLVER, 'no field named "train_net"'))


# ---------------------------------------------------------------- -weights

@pytest.fixture
def test_data(repo):
    (repo / "data").mkdir()
    _write_lmdb(repo / "data" / "test_lmdb", 2)
    _write_lmdb(repo / "data" / "train_lmdb", 2, side=32)
    return repo


def test_good_weights_score_as_before(test_data, env):
    rc, out = _caffe(test_data, env, "test", "-model", "models/mrfnet/test.prototxt",
                     "-weights", WEIGHTS, "-iterations", "1")
    assert rc == 0, out[-3000:]
    assert "Loss: " in out


@pytest.mark.parametrize("kind", ["missing", "truncated", "a prototxt", "empty"])
def test_weights_that_are_not_a_caffemodel(test_data, env, kind):
    w = test_data / "w.caffemodel"
    if kind == "truncated":
        w.write_bytes((test_data / WEIGHTS).read_bytes()[:100000])
    elif kind == "a prototxt":
        shutil.copy(test_data / "models/mrfnet/test.prototxt", w)
    elif kind == "empty":
        w.write_bytes(b"")
    expected = {"missing": "no such file", "truncated": "truncated or not a caffemodel",
                "a prototxt": "truncated or not a caffemodel", "empty": "holds no weights"}[kind]
    _fails(test_data, env, "test", "-model", "models/mrfnet/test.prototxt",
           "-weights", "w.caffemodel",
           names=("-weights w.caffemodel", expected))


def test_weights_of_another_shape_name_the_layer_and_both_shapes(test_data, env):
    net = _edit(test_data, "models/mrfnet/test.prototxt", "narrow.prototxt",
                ("num_output: 32", "num_output: 16"))
    _fails(test_data, env, "test", "-model", net, "-weights", WEIGHTS,
           names=(WEIGHTS, "layer 'Conv1'", "32 3 5 5", "16 3 5 5", "narrow.prototxt",
                  "another net"))
    # finetuning with them: the same message, naming the train net
    solver = _tiny_solver(test_data, "narrow", net_edits=(("num_output: 32", "num_output: 16"),))
    _fails(test_data, env, "train", "-solver", solver, "-weights", WEIGHTS,
           names=("layer 'Conv1'", "narrow_train.prototxt"))


def test_weights_without_a_layer_of_the_net(test_data, env):
    param = caffe_pb2.NetParameter()
    layer = param.layer.add(name="elsewhere", type="Convolution")
    layer.blobs.add().shape.dim.extend([1])
    layer.blobs[0].data.append(0.5)
    (test_data / "other.caffemodel").write_bytes(param.SerializeToString())
    _fails(test_data, env, "test", "-model", "models/mrfnet/test.prototxt", "-weights",
           "other.caffemodel", names=("other.caffemodel", "no layer of the net"))


# ---------------------------------------------------------------- -snapshot

@pytest.fixture
def snapshot(test_data, env):
    """One iteration of a tiny train net; its snapshot resumes (as before) from the same solver."""
    solver = _tiny_solver(test_data)
    rc, out = _caffe(test_data, env, "train", "-solver", solver)
    assert rc == 0, out[-3000:]
    state = "snap/tiny_iter_1.solverstate"
    assert (test_data / state).is_file() and (test_data / "snap/tiny_iter_1.caffemodel").is_file()
    return test_data, solver, state


def test_snapshot_resumes_and_a_missing_or_truncated_one_is_named(snapshot, env):
    repo, solver, state = snapshot
    rc, out = _caffe(repo, env, "train", "-solver", solver, "-snapshot", state)
    assert rc == 0 and STACK not in out, out[-3000:]
    _fails(repo, env, "train", "-solver", solver, "-snapshot", "snap/nope.solverstate",
           names=("-snapshot snap/nope.solverstate", "no such file"))
    (repo / "snap/cut.solverstate").write_bytes((repo / state).read_bytes()[:3000])
    _fails(repo, env, "train", "-solver", solver, "-snapshot", "snap/cut.solverstate",
           names=("snap/cut.solverstate", "truncated or not a solverstate"))


def test_snapshot_of_another_net_or_solver(snapshot, env):
    repo, _, state = snapshot
    narrow = _tiny_solver(repo, "narrow", net_edits=(("num_output: 32", "num_output: 16"),))
    _fails(repo, env, "train", "-solver", narrow, "-snapshot", state,
           names=(state, "snap/tiny_iter_1.caffemodel", "layer 'Conv1'", "another net"))
    sgd = _edit(repo, "tiny_solver.prototxt", "sgd_solver.prototxt",
                ('type: "Adam"', 'type: "SGD"'))
    _fails(repo, env, "train", "-solver", sgd, "-snapshot", state,
           names=(state, "history blobs", "SGD", "another net or solver"))


def test_snapshot_whose_caffemodel_is_elsewhere(snapshot, env):
    repo, solver, state = snapshot
    other = repo / "elsewhere"
    other.mkdir()
    for name in (solver, "tiny_train.prototxt"):
        shutil.copy(repo / name, other / name)
    (other / "data").symlink_to(repo / "data")
    _fails(other, env, "train", "-solver", solver, "-snapshot", f"../{state}",
           names=(f"../{state}", "snap/tiny_iter_1.caffemodel", "does not exist",
                  "folder training ran in"))


# ---------------------------------------------------------------- Python layers

@pytest.mark.parametrize("edit, names", [
    (('module: "layers.caffe_layers"', 'module: "layers.no_such_module"'),
     ("'layers.no_such_module'", "cannot import", "No module named", "search path",
      ".venv/bin/caffe")),
    (('layer: "ScaleRefinementLoss"', 'layer: "NoSuchLoss"'),
     ("'NoSuchLoss'", "'layers.caffe_layers'", "has none")),
])
def test_python_layer_that_does_not_import(test_data, env, edit, names):
    net = _edit(test_data, "models/mrfnet/train_pylayer.prototxt", "py.prototxt", *TINY, edit)
    _fails(test_data, env, "time", "-model", net, "-iterations", "1",
           names=("py.prototxt", "layer 'loss' (Python)") + names)


def test_good_hdf5_and_python_layer_nets_run_as_before(test_data, env):
    data = test_data / "data"
    with h5py.File(data / "ok.h5", "w") as f:
        f["data"] = np.random.rand(4, 3, 32, 32).astype(np.float32)
        f["label"] = np.random.rand(4, 3, 32, 32).astype(np.float32)
    (data / "ok.txt").write_text("data/ok.h5\n")
    h5 = _edit(test_data, "models/mrfnet/train_hdf5.prototxt", "h5ok.prototxt",
               ("data/train_hdf5.txt", "data/ok.txt"), ("batch_size: 16", "batch_size: 2"))
    py = _edit(test_data, "models/mrfnet/train_pylayer.prototxt", "pyok.prototxt", *TINY)
    for net in (h5, py):
        rc, out = _caffe(test_data, env, "time", "-model", net, "-iterations", "1")
        assert rc == 0 and "Average Forward-Backward" in out, out[-3000:]


# ---------------------------------------------------------------- memory

def _free_gb():
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return sum(int(info.get(k, "0 kB").split()[0]) for k in ("MemAvailable", "SwapFree")) / 1e6


def test_blobs_that_cannot_fit_say_so_with_a_batch_that_would(repo, env):
    """MRFNet at a batch of 20 of 1024x1024 needs at least 176 GB for its blobs and gradients
    (about the most it can ask: a larger batch or image takes a blob past Caffe's 2^31
    elements, which Caffe refuses while it builds the net)."""
    if _free_gb() > 150:
        pytest.skip(f"this machine has {_free_gb():.0f} GB free: the net would fit")
    net = _edit(repo, "models/mrfnet/deploy.prototxt", "huge.prototxt",
                ("dim: 1\n", "dim: 20\n"),
                ("dim: 256\n      dim: 256", "dim: 1024\n      dim: 1024"))
    msg = _fails(repo, env, "time", "-model", net, "-iterations", "1",
                 names=("huge.prototxt", "a batch of 20", "20 x 3 x 1024 x 1024", "GB"))
    assert "would fit" in msg or "Not even a batch of 1" in msg


def test_a_blob_past_caffes_limit(repo, env):
    """A batch of 60 of 1024x1024 gives MRFNet a blob of more than 2^31 - 1 elements, which
    Blob::Reshape refuses while the net is built, before any memory could be counted."""
    net = _edit(repo, "models/mrfnet/deploy.prototxt", "wide.prototxt",
                ("dim: 1\n", "dim: 60\n"),
                ("dim: 256\n      dim: 256", "dim: 1024\n      dim: 1024"))
    _fails(repo, env, "time", "-model", net, names=("wide.prototxt", "2^31 - 1", "batch_size"))


def test_memory_refused_while_running(repo, env):
    """Memory that passes the check but that the system then refuses (here a 3 GB address-space
    limit for a net of about 4 GB): SyncedMemory's failed allocation becomes the message."""
    if _free_gb() < 8:
        pytest.skip("the memory check would stop this net first")
    net = _edit(repo, "models/mrfnet/deploy.prototxt", "mid.prototxt", ("dim: 1\n", "dim: 2\n"),
                ("dim: 256\n      dim: 256", "dim: 512\n      dim: 512"))
    command = f"ulimit -v 3000000; exec caffe time -model {net} -iterations 1"
    r = subprocess.run(["bash", "-c", command], cwd=repo, env=env, capture_output=True,
                       text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 1 and STACK not in out, out[-3000:]
    assert "caffe: mid.prototxt: out of memory (" in out, out[-3000:]
