"""The layout docs/architecture.md draws: imports between the packages run one way (no circle),
the mrfnet leaves import nothing of the project, and no library module sets Caffe's log level."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("mrfnet", "prototxt_gen", "layers", "data_prep", "solver", "inference", "evaluation")
LEAVES = ("mrfnet/netfile.py", "mrfnet/sysmem.py", "mrfnet/caffe_log.py",
          "mrfnet/caffe_memory.py", "mrfnet/progress.py")


def _imports(path, package):
    """Project modules a file imports anywhere in it (functions included), as 'pkg.module'."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [f"{package}.{node.module}" if node.level else node.module]
        else:
            continue
        out.update(".".join(n.split(".")[:2]) for n in names
                   if n and n.split(".")[0] in PACKAGES)
    return out


def _graph():
    modules = {}
    for pkg in PACKAGES:
        for f in (REPO / pkg).glob("*.py"):
            modules[f"{pkg}.{f.stem}"] = _imports(f, pkg)
    return modules


def _cycle(edges):
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(edges):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_packages_import_one_way():
    edges = {}
    for mod, deps in _graph().items():
        pkg = mod.split(".")[0]
        edges.setdefault(pkg, set()).update(d.split(".")[0] for d in deps
                                            if d.split(".")[0] != pkg)
    assert _cycle(edges) is None, f"packages import each other: {' -> '.join(_cycle(edges))}"


def test_backends_and_memprobe_are_not_a_circle():
    graph = _graph()
    assert "inference.backends" in graph["inference.memprobe"]
    assert "inference.memprobe" not in graph["inference.backends"]
    assert "mrfnet.sysmem" in graph["inference.backends"] & graph["inference.memprobe"]


def test_leaves_import_nothing_of_the_project():
    for leaf in LEAVES:
        assert _imports(REPO / leaf, "mrfnet") == set(), leaf


def test_no_library_module_sets_the_caffe_log_level():
    """(A child process's env may carry it: that is where the child starts.)"""
    offenders = [str(f.relative_to(REPO)) for pkg in PACKAGES for f in (REPO / pkg).glob("*.py")
                 if f.name != "caffe_log.py" and any(
                     s in f.read_text() for s in ('environ.setdefault("GLOG', 'environ["GLOG'))]
    assert offenders == []
