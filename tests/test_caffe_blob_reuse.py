"""What patch 0003 (tools/caffe/patches/0003-reuse-blob-memory.patch) promises, on the built Caffe.

`net.reuse_blob_memory = True` lets a TEST net's intermediate blobs share pooled buffers and
its max pooling layers share one argmax scratch: the outputs stay bit-identical (Split aliases,
in-place ReLUs, reshapes to larger inputs included), the pool stops growing after the first
forwards, a forward's memory drops to about the blobs alive at one time, and what can no longer
work (a partial forward, a backward, the TRAIN phase) stops with a message instead of reading
freed memory.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import caffe
from prototxt_gen import nets
from prototxt_gen.caffe_net import load

REPO = Path(__file__).resolve().parents[1]


def _pair(paths=3, side=64):
    """Two MRFNets with the same random weights, one reusing blob memory."""
    plain = load(nets.deploy_net("mrfnet", paths, side, side))
    reuse = load(nets.deploy_net("mrfnet", paths, side, side))
    for name, ps in plain.params.items():
        for p, q in zip(ps, reuse.params[name]):
            q.data[...] = p.data
    reuse.reuse_blob_memory = True
    return plain, reuse


def _forward(net, x):
    if net.blobs["data"].data.shape != x.shape:
        net.blobs["data"].reshape(*x.shape)
        net.reshape()
    net.blobs["data"].data[...] = x
    net.forward()
    return net.blobs["predict_deblur"].data.copy()


def test_outputs_are_bit_identical_across_forwards_and_larger_inputs():
    plain, reuse = _pair()
    assert reuse.reuse_blob_memory and not plain.reuse_blob_memory
    rng = np.random.default_rng(0)
    for side in (64, 64, 96, 32, 128):   # grows past the pool's buffers, shrinks, grows again
        x = rng.random((1, 3, side, side), dtype=np.float32)
        np.testing.assert_array_equal(_forward(reuse, x), _forward(plain, x))
        np.testing.assert_array_equal(reuse.blobs["data"].data, x)   # the input keeps its memory


def test_a_forward_after_reshaping_only_the_input_is_still_exact():
    """Without net.reshape() the pool sizes buffers from the old shapes and each layer then
    grows its top: Blob::Reshape must not keep a too small shared buffer."""
    plain, reuse = _pair()
    rng = np.random.default_rng(3)
    for side in (32, 96, 32, 64, 48, 96, 64):   # capacities outgrow the pooled buffers
        x = rng.random((1, 3, side, side), dtype=np.float32)
        for net in (plain, reuse):
            net.blobs["data"].reshape(*x.shape)
            net.blobs["data"].data[...] = x
            net.forward()
        np.testing.assert_array_equal(reuse.blobs["predict_deblur"].data,
                                      plain.blobs["predict_deblur"].data)


def test_pool_settles_after_the_first_forwards_and_is_smaller_than_all_blobs():
    _, reuse = _pair(paths=4, side=128)
    x = np.random.default_rng(1).random((1, 3, 128, 128), dtype=np.float32)
    sizes = []
    for _ in range(5):
        _forward(reuse, x)
        sizes.append(reuse.blob_memory_pool_bytes())
    assert sizes[2:] == [sizes[1]] * 3, sizes
    every_blob = sum(4 * b.data.size for b in reuse.blobs.values())  # what stock Caffe holds
    assert 0 < sizes[-1] < every_blob / 4, (sizes[-1], every_blob)


def test_intermediate_blobs_read_zeros_and_turning_it_off_restores_them():
    plain, reuse = _pair()
    x = np.random.default_rng(2).random((1, 3, 64, 64), dtype=np.float32)
    _forward(plain, x)
    _forward(reuse, x)
    assert not reuse.blobs["conv_r1_m2"].data.any()
    assert plain.blobs["conv_r1_m2"].data.any()
    reuse.reuse_blob_memory = False
    assert reuse.blob_memory_pool_bytes() == 0
    _forward(reuse, x)
    np.testing.assert_array_equal(reuse.blobs["conv_r1_m2"].data, plain.blobs["conv_r1_m2"].data)


def test_the_project_turns_it_on_unless_told_not_to(monkeypatch):
    from mrfnet.caffe_memory import reuse_blob_memory
    net = load(nets.deploy_net("mrfnet", 2, 16, 16))
    monkeypatch.setenv("MRFNET_BLOB_REUSE", "0")
    assert not reuse_blob_memory(net) and not net.reuse_blob_memory
    monkeypatch.delenv("MRFNET_BLOB_REUSE")
    assert reuse_blob_memory(net) and net.reuse_blob_memory


_REFUSED = """
import os, sys
os.environ["GLOG_minloglevel"] = "0"
import caffe
from prototxt_gen import nets
from prototxt_gen.caffe_net import load
if sys.argv[1] == "train":
    net = load(nets.train_net("mrfnet", 2, data="input", crop=16, batch_size=1), phase="train")
else:
    net = load(nets.deploy_net("mrfnet", 2, 16, 16))
net.reuse_blob_memory = True
if sys.argv[1] == "partial":
    net.forward(end="Conv2")
elif sys.argv[1] == "backward":
    net.forward()
    net.backward()
print("not refused")
"""


@pytest.mark.parametrize("what,message", [
    ("partial", "only a whole forward is allowed"),
    ("backward", "no backward while blob memory reuse is on"),
    ("train", "blob memory reuse needs the TEST phase"),
])
def test_what_cannot_work_is_refused_with_a_message(what, message):
    proc = subprocess.run([sys.executable, "-c", _REFUSED, what], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode != 0 and "not refused" not in proc.stdout
    assert message in proc.stderr, proc.stderr[-2000:]


_RSS_PROBE = """
import os, sys
os.environ["GLOG_minloglevel"] = "2"
import numpy as np, caffe
from prototxt_gen import nets
from prototxt_gen.caffe_net import load
from mrfnet.sysmem import status_bytes

net = load(nets.deploy_net("mrfnet", 4, 256, 256))
net.reuse_blob_memory = sys.argv[1] == "1"
net.blobs["data"].data[...] = np.random.default_rng(0).random((1, 3, 256, 256))
before = status_bytes("RssAnon")
net.forward()
grown = status_bytes("RssAnon") - before
layers = list(zip(net._layer_names, net.layers))
split_tops = {t for name, l in layers if l.type == "Split" for t in net.top_names[name]}
blobs = sum(4 * b.data.size for n, b in net.blobs.items() if n not in split_tops)
masks = [4 * net.blobs[net.top_names[n][0]].data.size for n, l in layers if l.type == "Pooling"]
kept = sum(4 * net.blobs[n].data.size for n in ["data", *net.outputs])
pool = net.blob_memory_pool_bytes()
print(grown, blobs, sum(masks), max(masks), kept, pool)
"""


def test_a_forward_saves_what_the_pool_promises():
    """MRFNet P=4 at 256x256. Stock: every blob (Split tops share their bottom) and a max
    pooling mask per layer. With reuse: the pool, the kept input/output blobs and one mask
    scratch. The RSS a forward saves must be (nearly) that difference."""
    runs = {}
    for flag in ("0", "1"):
        proc = subprocess.run([sys.executable, "-c", _RSS_PROBE, flag], capture_output=True,
                              text=True, cwd=REPO, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[flag] = [int(v) for v in proc.stdout.split()[-6:]]
    grown_stock, blobs, masks, one_mask, kept, _ = runs["0"]
    grown_reuse, *_, pool = runs["1"]
    assert grown_stock > blobs + masks              # the measurement sees the blobs at all
    promised = blobs + masks - (pool + kept + one_mask)
    assert promised > blobs / 2                     # the pool holds well under half the blobs
    saved = grown_stock - grown_reuse
    assert 0.9 * promised <= saved <= 1.1 * promised, (saved, promised, runs)
