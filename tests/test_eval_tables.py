"""`mrfnet tables`: the paper's numbers as typed in evaluation/paper.py match the paper, and the
tables place our run files' numbers in the paper's layout, each traceable to its file."""
import argparse
import json
import re
from pathlib import Path

import pytest

from evaluation import paper
from evaluation.runs import EVAL_SCHEMA, MEMORY_SCHEMA, write_json
from mrfnet.commands import tables as tables_command

PAPER = Path(__file__).resolve().parents[2] / "shared" / "paper" / "mrfnet-paper.md"


def make_tables(argv):
    p = argparse.ArgumentParser()
    tables_command.add_arguments(p)
    return tables_command.run(p.parse_args([str(a) for a in argv]))


def _paper_rows(title_start):
    text = PAPER.read_text()
    block = text[text.index(title_start):]
    rows = {}
    for line in block.splitlines()[1:]:
        cells = [re.sub(r"</?b>", "", c).strip() for c in line.split("\t")]
        if len(cells) >= 3 and re.fullmatch(r"[\d.]+", cells[1]):
            rows[cells[0]] = [float(c) for c in cells[1:]]
        elif rows and line.strip() and len(cells) < 3:
            break
    return rows


def test_paper_numbers_match_the_paper():
    if not PAPER.is_file():
        pytest.fail(f"paper missing: {PAPER} (CI places ../shared beside the checkout)")
    ii = _paper_rows("TABLE II.")
    names = {"deblur GAN": "DeblurGAN", "DMPHN": "DMPHN", "SIUN": "SIUN",
             "Our model": "Our model (MRFNet)"}
    assert len(ii) == 4
    for printed, ours in names.items():
        g, v = paper.TABLE_II[ours]["GOPRO"], paper.TABLE_II[ours]["VisDrone"]
        assert ii[printed] == [*g, *v]
        assert list(paper.TABLE_III[ours]) == _paper_rows("TABLE III.")[printed]
    iv = _paper_rows("TABLE IV:")
    assert {k.replace("Deblur GAN", "DeblurGAN"): v for k, v in iv.items()} == \
        {k: list(v) for k, v in paper.TABLE_IV.items()}
    v_rows = _paper_rows("TABLE V:")
    for variant, vals in paper.TABLE_V.items():
        printed = {"refinenet": "RefineNet", "lwrefinenet": "LWRefineNet",
                   "rcrefinenet": "RCRefineNet", "mrfnet": "MRFNet"}[variant]
        assert v_rows[printed] == [*vals["GOPRO"], *vals["VisDrone"]]


def _eval_run(variant, dataset, psnr, created, backend="caffe", ssim_variant="matlab3d"):
    return {"schema": EVAL_SCHEMA, "kind": "eval", "variant": variant, "dataset": dataset,
            "n_images": 3, "ssim_variant": ssim_variant, "paths": 4, "created": created,
            "baseline": {"psnr": 21.5, "ssim": 0.61},
            "results": {backend: {"psnr": psnr, "ssim": 0.7777, "load_s": 0.25,
                                  "forward_mean_s": 1.5, "device": "cpu",
                                  "image_sizes": [[720, 1280]]}}}


def test_tables_place_our_runs_in_the_paper_layout_with_sources(tmp_path):
    runs = tmp_path / "runs"
    write_json(runs / "old" / "summary.json", _eval_run("mrfnet", "gopro", 25.11, "2025-01-01"))
    write_json(runs / "new" / "summary.json", _eval_run("mrfnet", "gopro", 26.22, "2025-02-01"))
    write_json(runs / "sk" / "summary.json",
               _eval_run("mrfnet", "gopro", 29.99, "2025-03-01", ssim_variant="skimage"))
    write_json(runs / "lw" / "summary.json",
               _eval_run("lwrefinenet", "visdrone", 27.33, "2025-01-05", backend="opencv"))
    write_json(runs / "mem" / "memory.json", {
        "schema": MEMORY_SCHEMA, "kind": "memory", "variant": "mrfnet", "created": "2025-01-02",
        "results": [{"batch": 8, "crop": 256, "paths": 4, "iters": 2, "peak_rss_mb": 7931.0,
                     "net_batch_mb": 7791.0},
                    {"batch": 16, "crop": 256, "paths": 4, "iters": 2, "error": "limit"}]})
    (runs / "other.json").write_text(json.dumps({"something": "else"}))  # not ours: ignored
    out = tmp_path / "docs" / "tables.md"
    assert make_tables(["--runs", runs, "--out", out]) == 0
    md = out.read_text()
    sections = {s.split("\n", 1)[0]: s for s in md.split("## ")[1:]}
    t2, t3, t4, t5 = (next(v for k, v in sections.items() if k.startswith(f"Table {n}."))
                      for n in ("II", "III", "IV", "V"))
    notes = dict(re.findall(r"^\[(\d+)\] `([^`]+)`", md, re.M))

    def cell_source(table, row_start, text):
        row = next(l for l in table.splitlines() if l.startswith(f"| {row_start}"))
        m = re.search(re.escape(text) + r"[^|]*?\[(\d+)\]", row)
        assert m, (row_start, text, row)
        return (out.parent / notes[m.group(1)]).resolve()

    # newest MATLAB-SSIM run wins; the skimage one is not mixed in; the paper's row is kept
    assert cell_source(t2, "MRFNet (ours)", "26.22") == (runs / "new" / "summary.json").resolve()
    assert "29.99" not in md and "25.11 " not in t2
    assert "| Our model (MRFNet) (paper) | 34.63429 | 0.907881 | 29.40845 | 0.862474 |" in t2
    assert cell_source(t2, "Blurred input", "21.50").parent.name == "new"
    # Table V: variants as rows, VisDrone column from the run labelled visdrone
    assert cell_source(t5, "LWRefineNet (ours)", "27.33").parent.name == "lw"
    assert "| RCRefineNet (paper) | 34.39430 |" in t5
    # Table IV: load + forward per backend, sizes in the footnote
    assert cell_source(t4, "MRFNet (ours, caffe cpu)", "1.750 (load 0.250").parent.name == "new"
    assert cell_source(t4, "LWRefineNet (ours, opencv cpu)", "1.750").parent.name == "lw"
    # Table III: CPU RSS labelled as such; a failed batch says so
    assert cell_source(t3, "MRFNet (ours, CPU peak RSS MB)", "7931").name == "memory.json"
    assert "failed" in t3 and "| DMPHN (paper, GPU MB) | 6541 | 7329 |" in t3
    assert all((out.parent / p).resolve().is_file() for p in notes.values())


def test_unreadable_or_missing_runs_exit_2(tmp_path, capsys):
    assert make_tables(["--runs", tmp_path / "nope", "--out", tmp_path / "t.md"]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert make_tables(["--runs", tmp_path / "empty", "--out", tmp_path / "t.md"]) == 2
    assert "no run files" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "summary.json").write_text("{not json")
    assert make_tables(["--runs", tmp_path / "bad", "--out", tmp_path / "t.md"]) == 2
    assert "summary.json" in capsys.readouterr().err
    assert not (tmp_path / "t.md").exists()
