"""Blob memory reuse for TEST nets whose caller reads only the outputs (Caffe patch 0003).

Stock Caffe keeps every blob of a net for its whole life: 5.1 KB per input pixel for MRFNet with
4 paths (Split tops counted once), plus 0.5 KB of max pooling masks, where the blobs alive at one
time need 0.8 KB. The project's Caffe
(tools/caffe/patches/0003-reuse-blob-memory.patch) can pool them; this is the one place that
turns it on, so deblurring, evaluation and the trainer's validation net all get it.
MRFNET_BLOB_REUSE=0 keeps every blob instead (the "no blob reuse" lever of `make bench`).
"""
import os


def reuse_blob_memory(net):
    """Let a TEST-phase caffe.Net's intermediate blobs share memory. Afterwards only its inputs
    and outputs hold values after a forward (keep no numpy view of another blob across one),
    and only whole forwards are allowed (no backward).
    Returns False, changing nothing, on a Caffe without the patch (the stock baseline that
    `make bench` measures) or with MRFNET_BLOB_REUSE=0."""
    if os.environ.get("MRFNET_BLOB_REUSE") == "0" or not hasattr(type(net), "reuse_blob_memory"):
        return False
    net.reuse_blob_memory = True
    return True
