"""The `mrfnet` console command lists every subcommand and rejects unknown input clearly."""
import subprocess

from mrfnet.cli import COMMANDS


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


def test_unknown_subcommand_and_option_are_clear_errors(venv_bin):
    proc = _run(venv_bin, "deblurr")
    assert proc.returncode == 2 and "invalid choice: 'deblurr'" in proc.stderr
    proc = _run(venv_bin, "convert", "--out", "x", "--no-such-option")
    assert proc.returncode == 2 and "unrecognized arguments: --no-such-option" in proc.stderr
    assert "Traceback" not in proc.stderr
