"""The `mrfnet` console command lists every subcommand, each with its own --help and an
example, rejects unknown input clearly, and is the only form the docs use."""
import re
import subprocess
from pathlib import Path

from mrfnet.cli import COMMANDS

REPO = Path(__file__).resolve().parents[1]


def _run(venv_bin, *args):
    return subprocess.run([str(venv_bin / "mrfnet"), *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_subcommand(venv_bin):
    proc = _run(venv_bin, "--help")
    assert proc.returncode == 0
    for name in COMMANDS:
        assert name in proc.stdout, name


def test_every_subcommand_has_its_own_help(venv_bin):
    for name in COMMANDS:
        proc = _run(venv_bin, name, "--help")
        assert proc.returncode == 0, (name, proc.stderr[-2000:])
        assert f"usage: mrfnet {name}" in proc.stdout
        example = proc.stdout.split("\nexample:\n", 1)
        assert len(example) == 2 and f"mrfnet {name}" in example[1], (name, proc.stdout[-500:])


def test_unknown_subcommand_and_option_are_clear_errors(venv_bin):
    proc = _run(venv_bin, "deblurr")
    assert proc.returncode == 2 and "invalid choice: 'deblurr'" in proc.stderr
    proc = _run(venv_bin, "convert", "--out", "x", "--no-such-option")
    assert proc.returncode == 2 and "unrecognized arguments: --no-such-option" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_docs_run_jobs_only_as_mrfnet_subcommands():
    """README, docs/, the model cards and the Makefile name no `python -m` job (pytest, pip and
    venv are tools, not jobs of this project)."""
    files = [REPO / "README.md", REPO / "Makefile", *sorted((REPO / "docs").glob("*.md")),
             *sorted((REPO / "models").glob("*/MODEL.md"))]
    found = []
    for f in files:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            for m in re.finditer(r"(?:python3?|\$\(PY\)|\.venv/bin/python) +-m +(\S+)", line):
                if m.group(1) not in ("pytest", "pip", "venv"):
                    found.append(f"{f.relative_to(REPO)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)
