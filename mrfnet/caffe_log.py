"""Caffe's log level, set once where a process starts.

glog reads GLOG_* from the environment when Caffe's library loads (the first `import caffe`, or
`from caffe.proto import caffe_pb2`); set later, it changes nothing and every net and solver
build floods stderr with INFO lines. So each entry point calls `quiet_caffe()` first: the
`mrfnet` command, the `python -m` tools and workers, tests/conftest.py. Library modules never
set it, so a program that imports them keeps its own choice; child processes inherit it.
"""
import os

QUIET = {"GLOG_minloglevel": "2"}  # errors only


def quiet_caffe(env=None):
    """Set QUIET in `env` (default os.environ) where it is not set yet; returns env."""
    env = os.environ if env is None else env
    for key, value in QUIET.items():
        env.setdefault(key, value)
    return env
