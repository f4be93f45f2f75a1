"""Read the numbers back out of a `caffe train` log (glog text on stderr).

Used to summarise the `caffe train` stages and by tests: per-iteration loss and lr, train/test
net outputs (loss_r{k}, psnr, ssim).
"""
import re

_ITER_LOSS = re.compile(r"Iteration (\d+)(?: \([^)]*\))?, loss = ([-+0-9.eEinfa]+)")
_ITER_LR = re.compile(r"Iteration (\d+), lr = ([-+0-9.eEinfa]+)")
_TESTING = re.compile(r"Iteration (\d+), Testing net")
_OUTPUT = re.compile(r"(Train|Test) net output #\d+: (\w+) = ([-+0-9.eEinfa]+)")


def parse(text):
    """{"loss": {iter: v}, "lr": {iter: v}, "train_outputs": {iter: {name: v}},
    "test": {iter: {name: v}}} from the log text."""
    out = {"loss": {}, "lr": {}, "train_outputs": {}, "test": {}}
    last_iter, test_iter = None, None
    for line in text.splitlines():
        m = _ITER_LOSS.search(line)
        if m:
            last_iter = int(m.group(1))
            out["loss"][last_iter] = float(m.group(2))
            continue
        m = _ITER_LR.search(line)
        if m:
            out["lr"][int(m.group(1))] = float(m.group(2))
            continue
        m = _TESTING.search(line)
        if m:
            test_iter = int(m.group(1))
            out["test"].setdefault(test_iter, {})
            continue
        m = _OUTPUT.search(line)
        if m:
            kind, name, value = m.group(1), m.group(2), float(m.group(3))
            if kind == "Test" and test_iter is not None:
                out["test"][test_iter][name] = value
            elif kind == "Train" and last_iter is not None:
                out["train_outputs"].setdefault(last_iter, {})[name] = value
    return out
