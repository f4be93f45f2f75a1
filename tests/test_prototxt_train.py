"""Train nets: backward gives finite non-zero gradients; stock and Python eq. (5) losses agree;
the LMDB (6-channel Datum + Slice) and HDF5 train/test nets read real databases."""
import h5py
import lmdb
import numpy as np
import pytest

import caffe
from caffe.proto import caffe_pb2

from prototxt_gen import nets, topology as T
from prototxt_gen.caffe_net import load

CROP, BATCH = 32, 2


def random_batch(seed, paths=2, crop=CROP, batch=BATCH):
    rng = np.random.default_rng(seed)
    sharp = rng.random((batch, 3, crop, crop)).astype(np.float32)
    blur = (0.5 * sharp + 0.5 * np.roll(sharp, 3, axis=3)).astype(np.float32)
    return blur, sharp


def set_batch(net, blur, sharp):
    net.blobs["data"].data[...] = blur
    net.blobs["label"].data[...] = sharp


def assert_gradients_ok(net, what):
    assert len(net.params) > 0
    for name, blobs in net.params.items():
        grad = blobs[0].diff
        assert np.isfinite(grad).all(), f"{what}: {name} has non-finite gradients"
        assert np.abs(grad).max() > 0, f"{what}: {name} has an all-zero weight gradient"


def total_loss(net):
    return sum(float(net.blobs[b].data.flat[0]) * net.blob_loss_weights[b] for b in net.outputs)


@pytest.mark.parametrize("variant", T.VARIANTS)
@pytest.mark.parametrize("loss", nets.LOSS_KINDS)
def test_backward_through_each_train_net(variant, loss):
    net = load(nets.train_net(variant, 2, data="input", loss=loss, crop=CROP, batch_size=BATCH),
               phase="train")
    set_batch(net, *random_batch(0))
    net.forward()
    assert np.isfinite(total_loss(net)) and total_loss(net) > 0
    net.backward()
    assert_gradients_ok(net, f"{variant}/{loss}")


@pytest.mark.parametrize("variant,paths,weights", [
    ("mrfnet", 3, [0.25, 1.0, 2.0]),
    ("refinenet", 2, None),
])
def test_stock_and_python_losses_agree_in_value_and_gradients(variant, paths, weights):
    """The two train flavours are the same eq. (5): equal loss and parameter gradients."""
    caffe.set_random_seed(7)
    stock = load(nets.train_net(variant, paths, data="input", loss="stock", crop=CROP,
                                batch_size=BATCH, weights=weights), phase="train")
    python = load(nets.train_net(variant, paths, data="input", loss="python", crop=CROP,
                                 batch_size=BATCH, weights=weights), phase="train")
    for name, blobs in stock.params.items():   # same weights in both
        for a, b in zip(blobs, python.params[name]):
            b.data[...] = a.data
    blur, sharp = random_batch(3, paths)
    ks = range(1, paths + 1)
    for net in (stock, python):
        set_batch(net, blur, sharp)
        net.forward()
        net.backward()
    # eq. (5) by hand from the predictions the net produced
    w = nets.loss_weights(paths, weights)
    by_hand = sum(w[k - 1] * ((stock.blobs[f"pred_r{k}"].data - stock.blobs[
        f"label_r{k}" if k < paths else "label"].data) ** 2).sum() / stock.blobs[f"pred_r{k}"].count
        for k in ks) / (2 * paths)
    assert total_loss(stock) == pytest.approx(by_hand, rel=1e-5)
    assert total_loss(python) == pytest.approx(total_loss(stock), rel=1e-5)
    for name, blobs in stock.params.items():
        for a, b in zip(blobs, python.params[name]):
            scale = np.abs(a.diff).max()
            assert scale > 0, name
            np.testing.assert_allclose(b.diff, a.diff, rtol=1e-4, atol=1e-5 * scale, err_msg=name)


def write_lmdb(path, blur_u8, sharp_u8):
    """One 6-channel uint8 Datum per patch: blurred BGR then sharp BGR (C x H x W)."""
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i, (b, s) in enumerate(zip(blur_u8, sharp_u8)):
            datum = caffe_pb2.Datum(channels=6, height=b.shape[1], width=b.shape[2],
                                    data=np.concatenate([b, s]).tobytes())
            txn.put(f"{i:08d}".encode(), datum.SerializeToString())
    env.close()


def retarget(net_param, source):
    for layer in net_param.layer:
        if layer.type == "Data":
            layer.data_param.source = source
        if layer.type == "HDF5Data":
            layer.hdf5_data_param.source = source
    return net_param


def test_lmdb_train_and_test_nets_read_6_channel_datums(tmp_path):
    rng = np.random.default_rng(5)
    blur = rng.integers(0, 256, (2, 3, 40, 40), dtype=np.uint8)
    sharp = rng.integers(0, 256, (2, 3, 40, 40), dtype=np.uint8)
    for loss, phase in (("stock", "train"), ("python", "train"), ("stock", "test")):
        # One database per net: this Caffe's DataReader shares one reading thread between all
        # live Data layers with the same name and source, round-robin, which deadlocks when one
        # of them is never read (the previous net here, until garbage-collected).
        db = tmp_path / f"db_{loss}_{phase}"
        write_lmdb(db, blur, sharp)
        param = nets.train_net("mrfnet", 2, data="lmdb", loss=loss, crop=CROP, batch_size=2,
                               phase=phase)
        net = load(retarget(param, str(db)), phase=phase)
        net.forward()
        got_blur, got_sharp = net.blobs["data"].data, net.blobs["label"].data
        assert got_blur.shape == got_sharp.shape == (2, 3, CROP, CROP)
        if phase == "test":   # center crop, no mirror: exactly the stored pixels / 255
            np.testing.assert_allclose(got_blur, blur[:, :, 4:36, 4:36] / 255.0, atol=1e-6)
            np.testing.assert_allclose(got_sharp, sharp[:, :, 4:36, 4:36] / 255.0, atol=1e-6)
        else:                 # random crop/mirror, applied alike to both halves of the Datum
            for i in range(2):
                found = [(y, x, m) for y in range(9) for x in range(9) for m in (False, True)
                         if np.allclose(_crop(blur[i], y, x, m) / 255.0, got_blur[i], atol=1e-6)]
                assert found, "blurred crop not found in the stored image"
                y, x, m = found[0]
                np.testing.assert_allclose(got_sharp[i], _crop(sharp[i], y, x, m) / 255.0, atol=1e-6)
            net.backward()
            assert_gradients_ok(net, f"lmdb/{loss}")


def _crop(img, y, x, mirror):
    c = img[:, y:y + CROP, x:x + CROP]
    return c[:, :, ::-1] if mirror else c


def test_hdf5_train_net_reads_data_and_label(tmp_path):
    blur, sharp = random_batch(9)
    with h5py.File(tmp_path / "train.h5", "w") as f:
        f["data"], f["label"] = blur, sharp
    (tmp_path / "list.txt").write_text(str(tmp_path / "train.h5") + "\n")
    param = nets.train_net("lwrefinenet", 2, data="hdf5", crop=CROP, batch_size=2)
    net = load(retarget(param, str(tmp_path / "list.txt")), phase="train")
    net.forward()
    got = sorted([net.blobs["data"].data[i].sum() for i in range(2)])
    assert got == pytest.approx(sorted(blur[i].sum() for i in range(2)), rel=1e-6)
    net.backward()
    assert_gradients_ok(net, "hdf5")
