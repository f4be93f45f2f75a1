"""The layout docs/architecture.md draws: imports between the packages run one way (no circle),
the subcommands (mrfnet.commands) sit on top and no package imports them, the mrfnet leaves
import nothing of the project, and no library module sets Caffe's log level."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("mrfnet", "prototxt_gen", "layers", "data_prep", "solver", "inference", "evaluation",
            "benchmarks")
COMMANDS = "mrfnet.commands"   # one module per subcommand: a node of its own, above every package
LEAVES = ("mrfnet/netfile.py", "mrfnet/sysmem.py", "mrfnet/caffe_log.py",
          "mrfnet/caffe_memory.py", "mrfnet/progress.py")


def _node(name):
    """The graph node of an imported name: 'pkg.module', or 'mrfnet.commands.module'."""
    parts = name.split(".")
    return ".".join(parts[:3] if name.startswith(COMMANDS + ".") else parts[:2])


def _package(module):
    """The package node a module belongs to (mrfnet.commands apart from mrfnet)."""
    return COMMANDS if module.startswith(COMMANDS) else module.split(".")[0]


def _imports(path, package):
    """Project modules a file imports anywhere in it (functions included), as 'pkg.module'."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            names = [".".join(filter(None, (base, node.module)))] if node.module else \
                [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        out.update(_node(n) for n in names if n and n.split(".")[0] in PACKAGES)
    return out


def _files():
    """(module name, file) of every module in the packages, mrfnet.commands included."""
    for pkg in PACKAGES + (COMMANDS,):
        for f in (REPO / pkg.replace(".", "/")).glob("*.py"):
            yield f"{pkg}.{f.stem}", f, pkg


def _graph():
    return {mod: _imports(f, pkg) for mod, f, pkg in _files()}


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
        pkg = _package(mod)
        edges.setdefault(pkg, set()).update(_package(d) for d in deps if _package(d) != pkg)
    assert _cycle(edges) is None, f"packages import each other: {' -> '.join(_cycle(edges))}"


def test_no_package_imports_the_subcommands():
    graph = _graph()
    assert len([m for m in graph if m.startswith(COMMANDS + ".")]) > 10
    offenders = {mod: sorted(d for d in deps if d.startswith(COMMANDS))
                 for mod, deps in graph.items() if not mod.startswith(COMMANDS)}
    assert {m: d for m, d in offenders.items() if d} == {}


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
    offenders = [str(f.relative_to(REPO)) for _, f, _ in _files()
                 if f.name != "caffe_log.py" and any(
                     s in f.read_text() for s in ('environ.setdefault("GLOG', 'environ["GLOG'))]
    assert offenders == []
