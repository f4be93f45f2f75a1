"""HDF5 files for Caffe's HDF5Data layer: `data` (blurred) and `label` (sharp), float32
N x 3 x H x W, BGR, values in [0, 1] (uint8 / 255), split into files of bounded size, plus the
list file HDF5Data reads (one .h5 path per line).

Patches arrive in rendering order; they are staged as uint8 in a memory-mapped file (a quarter of
the final size) and written out in slot order (a seeded permutation), so every file holds a
shuffled mix of the whole set. List paths: absolute by default (Caffe resolves relative paths
against its working directory, not the list file); `relative_to` writes them relative to a
folder instead (the folder you will run caffe from).
"""
import os
from pathlib import Path

import h5py
import numpy as np


def patches_per_file(max_mb, channels, height, width):
    per_patch = 2 * channels * height * width * 4
    return max(1, int(max_mb * (1 << 20)) // per_patch)


class Hdf5Writer:
    def __init__(self, folder, list_file, final_folder, slots, crop, max_mb=256, relative_to=None,
                 compression=None):
        """Write into `folder` (a temporary place); the list file names `final_folder`'s files."""
        self.folder, self.list_file = Path(folder), Path(list_file)
        self.final_folder = Path(final_folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.crop, self.max_mb = int(crop), max_mb
        self.relative_to = relative_to
        self.compression = compression
        self.staging_path = self.folder / ".staging.npy"
        self.stage = np.lib.format.open_memmap(self.staging_path, mode="w+", dtype=np.uint8,
                                               shape=(max(1, slots), 6, self.crop, self.crop))
        self.filled = np.zeros(max(1, slots), dtype=bool)

    def put(self, slot, blurred, sharp):
        self.stage[slot, :3] = blurred.transpose(2, 0, 1)
        self.stage[slot, 3:] = sharp.transpose(2, 0, 1)
        self.filled[slot] = True
        return slot

    def _list_entry(self, name):
        final = self.final_folder / name
        if self.relative_to is not None:
            return os.path.relpath(final, self.relative_to)
        return str(final)

    def close(self):
        """Write the .h5 files and the list file; return (summary, {slot: 'file:row'})."""
        slots = np.flatnonzero(self.filled)
        per_file = patches_per_file(self.max_mb, 3, self.crop, self.crop)
        names, where = [], {}
        for f, start in enumerate(range(0, len(slots), per_file)):
            chunk = slots[start:start + per_file]
            name = f"part-{f:05d}.h5"
            shape = (len(chunk), 3, self.crop, self.crop)
            with h5py.File(self.folder / name, "w") as h5:
                kw = dict(chunks=(1, 3, self.crop, self.crop), compression=self.compression)
                data = h5.create_dataset("data", shape=shape, dtype=np.float32, **kw)
                label = h5.create_dataset("label", shape=shape, dtype=np.float32, **kw)
                for row0 in range(0, len(chunk), 64):
                    block = self.stage[chunk[row0:row0 + 64]].astype(np.float32) / np.float32(255.0)
                    data[row0:row0 + len(block)] = block[:, :3]
                    label[row0:row0 + len(block)] = block[:, 3:]
            for row, slot in enumerate(chunk):
                where[int(slot)] = f"{self.final_folder.name}/{name}:{row}"
            names.append(name)
        self.list_file.write_text("".join(self._list_entry(n) + "\n" for n in names))
        del self.stage
        self.staging_path.unlink()
        return {"patches": int(len(slots)), "files": len(names), "patches_per_file": per_file}, where
