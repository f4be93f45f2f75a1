"""LMDB of Caffe Datums: one Datum per patch, 6 uint8 channels (blurred B,G,R then sharp B,G,R), CHW.

Keeping both images in one Datum lets Caffe's Data layer crop and mirror them identically; a
Slice layer (slice_point 3) separates them again. Keys are zero-padded slot numbers; slots are a
seeded permutation, so the database (read in key order by Caffe) is shuffled. Writes are batched
in transactions; when LMDB's map is full the map is doubled and the batch retried.
"""
import lmdb
import numpy as np


def datum_bytes(blurred, sharp):
    """Serialised caffe Datum holding the pair as 6 x H x W uint8."""
    from caffe.proto import caffe_pb2
    chw = np.concatenate([blurred, sharp], axis=2).transpose(2, 0, 1)
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = chw.shape
    datum.data = np.ascontiguousarray(chw).tobytes()
    datum.label = 0
    return datum.SerializeToString()


def key_of(slot):
    return f"{int(slot):08d}"


class LmdbWriter:
    def __init__(self, path, map_size=1 << 26, batch=64):
        self.path = str(path)
        self.env = lmdb.open(self.path, map_size=int(map_size), subdir=True, meminit=False,
                             map_async=True, writemap=False, lock=True)
        self.map_size = int(map_size)
        self.batch = int(batch)
        self.pending = []
        self.count = 0
        self.grown = 0

    def put(self, slot, blurred, sharp):
        """Queue one patch under key_of(slot); return its location string."""
        key = key_of(slot)
        self.pending.append((key.encode("ascii"), datum_bytes(blurred, sharp)))
        if len(self.pending) >= self.batch:
            self.flush()
        return key

    def flush(self):
        while self.pending:
            try:
                with self.env.begin(write=True) as txn:
                    for key, value in self.pending:
                        txn.put(key, value, overwrite=True)
            except lmdb.MapFullError:
                self.map_size *= 2
                self.env.set_mapsize(self.map_size)
                self.grown += 1
                continue
            self.count += len(self.pending)
            self.pending = []

    def close(self):
        self.flush()
        self.env.sync(True)
        self.env.close()
        return {"patches": self.count, "map_size": self.map_size, "map_grown": self.grown}
