"""The net files of one run, generated into its run directory by prototxt_gen's builders with the
run's databases, crop and batch, so that a run directory is self-contained and reproducible."""
import os
from pathlib import Path

from caffe.proto import caffe_pb2

from prototxt_gen import nets
from prototxt_gen.topology import TopologyError, check_size, total_stride
from solver.data import db_kind, hdf5_files, sample_shape
from solver.errors import RunConfigError

METRICS_MODULE, METRICS_LAYER = "layers.caffe_layers", "ImageQualityMetrics"


def data_source(db, run_dir, name):
    """(data kind for prototxt_gen, source string) for a training/validation database. A single
    .h5 file gets a one-line list file in the run dir (Caffe's HDF5Data reads lists)."""
    kind = db_kind(db)
    if kind == "pairs":
        raise RunConfigError(f"{db}: a folder of pairs cannot feed a Caffe data layer; convert it "
                             f"with `mrfnet convert` (or use it as --val for `mrfnet train`)")
    if kind == "lmdb":
        return "lmdb", str(Path(db).resolve())
    files = [str(f.resolve()) for f in hdf5_files(db)]
    lst = Path(run_dir) / f"{name}_hdf5.txt"
    lst.write_text("\n".join(files) + "\n")
    return "hdf5", str(lst.resolve())


def check_net_crop(crop, paths, option="--crop"):
    """The crop must fit the net: a multiple of its total stride."""
    try:
        check_size(crop, crop, paths, what=f"{option} {crop}")
    except TopologyError as exc:
        raise RunConfigError(str(exc)) from None
    return crop


def check_crop(db, crop, paths, option="--crop"):
    """The crop must fit the net (multiple of its stride) and the stored patches (LMDB crops
    inside them; HDF5Data cannot crop, so it must equal them)."""
    check_net_crop(crop, paths, option)
    h, w = sample_shape(db)
    if db_kind(db) == "hdf5" and (h, w) != (crop, crop):
        raise RunConfigError(f"{db}: HDF5 patches are {w}x{h} but {option} is {crop}; HDF5Data "
                             f"cannot crop, so give {option} {h} (square patches) or use an LMDB")
    if h < crop or w < crop:
        raise RunConfigError(f"{db}: patches are {w}x{h}, smaller than {option} {crop}")
    return crop


def add_metrics(net, paths):
    """Append an ImageQualityMetrics layer (PSNR/SSIM of the finest prediction) to a test net,
    so `caffe train` prints validation PSNR/SSIM at every test_interval."""
    layer = net.layer.add()
    layer.name = "metrics"
    layer.type = "Python"
    layer.bottom.extend([f"pred_r{paths}", "label"])
    layer.top.extend(["psnr", "ssim"])
    layer.propagate_down.extend([False, False])
    layer.python_param.module = METRICS_MODULE
    layer.python_param.layer = METRICS_LAYER
    layer.python_param.param_str = '{"name": "metrics"}'
    layer.include.add().phase = caffe_pb2.TEST
    return net


def write_text(path, text):
    tmp = str(path) + ".tmp"
    Path(tmp).write_text(text)
    os.replace(tmp, path)
    return str(path)


def write_train_net(path, variant, paths, db, run_dir, crop, batch, loss, weights=None,
                    header=(), penalty="l2"):
    """The run's train net; db None = Input blobs "data" and "label" fed by the trainer."""
    kind, source = data_source(db, run_dir, "train") if db else ("input", None)
    net = nets.train_net(variant, paths, data=kind, loss=loss, crop=crop, batch_size=batch,
                         source=source, weights=weights, phase="train", penalty=penalty)
    return write_text(path, nets.to_text(net, header=header))


def write_test_net(path, variant, paths, db, run_dir, crop, batch, header=()):
    kind, source = data_source(db, run_dir, "val")
    net = nets.train_net(variant, paths, data=kind, loss="stock", crop=crop, batch_size=batch,
                         source=source, phase="test")
    # This Caffe's Data layers share one reader per (layer name, source): the same name and DB in
    # the train and test nets would make them share (and starve) one reader, so rename ours.
    for layer in net.layer:
        if layer.type == "Data":
            layer.name = f"val_{layer.name}"
    return write_text(path, nets.to_text(add_metrics(net, paths), header=header))


def write_deploy_net(path, variant, paths, height, width, header=()):
    return write_text(path, nets.to_text(nets.deploy_net(variant, paths, height, width),
                                         header=header))


def stride(paths):
    return total_stride(paths)
