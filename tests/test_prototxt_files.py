"""Committed models/ equal the generator; the CLI; the solver template gives a working Adam solver."""
import shutil
from pathlib import Path

import numpy as np
import pytest

import caffe
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from mrfnet.cli import main
from prototxt_gen import files, nets, topology as T
from prototxt_gen.solver_spec import (
    ENUMS, FIELDS, REPEATED, SolverSpecError, render, solver_text)

REPO = Path(__file__).resolve().parents[1]


def test_committed_prototxts_match_the_generator():
    assert files.check(REPO / "models", T.VARIANTS, T.DEFAULT_PATHS, label="models") == []


def test_generation_is_deterministic_and_files_parse():
    a = files.generate("mrfnet", 3)
    assert a == files.generate("mrfnet", 3)
    for name, text in a.items():
        msg = caffe_pb2.SolverParameter() if name == "solver.prototxt" else caffe_pb2.NetParameter()
        text_format.Parse(text, msg)
    assert "/work/" not in "".join(a.values()) and "/root/" not in "".join(a.values())


def test_cli_writes_checks_and_reports_differences(tmp_path, capsys):
    out = tmp_path / "models"
    assert main(["prototxt", "--out", str(out), "--variant", "refinenet", "--paths", "2"]) == 0
    d = out / "refinenet_p2"
    assert sorted(p.name for p in d.iterdir()) == sorted(files.FILES)
    assert main(["prototxt", "--out", str(out), "--variant", "refinenet", "--paths", "2",
                 "--check"]) == 0
    (d / "deploy.prototxt").write_text((d / "deploy.prototxt").read_text().replace("32", "31", 1))
    (d / "test.prototxt").unlink()
    capsys.readouterr()
    assert main(["prototxt", "--out", str(out), "--variant", "refinenet", "--paths", "2",
                 "--check"]) == 1
    err = capsys.readouterr().err
    assert "deploy.prototxt (differs)" in err and "test.prototxt (missing)" in err
    assert "solver.prototxt" not in err


def test_cli_bad_paths_and_variant(tmp_path, capsys):
    assert main(["prototxt", "--out", str(tmp_path), "--paths", "7"]) == 2
    assert "integer in 1..6" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["prototxt", "--variant", "unet"])
    assert exc.value.code == 2
    assert "invalid choice: 'unet'" in capsys.readouterr().err


def test_committed_solver_is_adam_with_the_paper_settings():
    text = (REPO / "models" / "mrfnet" / "solver.prototxt").read_text()
    s = text_format.Parse(text, caffe_pb2.SolverParameter())
    assert (s.type, s.momentum, s.lr_policy, s.gamma) == ("Adam", pytest.approx(0.9), "step", 0.5)
    assert s.momentum2 == pytest.approx(0.999) and s.base_lr == pytest.approx(1e-4)
    assert s.train_net == "models/mrfnet/train.prototxt"
    assert s.test_net == ["models/mrfnet/test.prototxt"]


def test_solver_text_steps_a_real_adam_solver(tmp_path):
    net = tmp_path / "train.prototxt"
    net.write_text(nets.to_text(nets.train_net("mrfnet", 2, data="input", crop=16, batch_size=1)))
    solver_file = tmp_path / "solver.prototxt"
    solver_file.write_text(solver_text(train_net=str(net), snapshot_prefix=str(tmp_path / "s"),
                                       max_iter=5, snapshot=0, display=0, iter_size=1,
                                       stepvalue=[2, 4], lr_policy="multistep"))
    solver = caffe.get_solver(str(solver_file))
    assert solver.net.layers  # a real net behind it
    before = solver.net.params["Conv1"][0].data.copy()
    solver.net.blobs["data"].data[...] = np.random.default_rng(0).random((1, 3, 16, 16))
    solver.net.blobs["label"].data[...] = np.random.default_rng(1).random((1, 3, 16, 16))
    solver.step(1)
    assert solver.iter == 1
    assert not np.array_equal(before, solver.net.params["Conv1"][0].data)
    text = solver_file.read_text()
    assert "stepvalue: 2\nstepvalue: 4" in text and "iter_size: 1" in text and "test_iter" not in text


def test_solver_text_rejects_unknown_fields_and_bad_values():
    with pytest.raises(SolverSpecError, match="'base_learning_rate' is not a Caffe SolverParameter"):
        solver_text(base_learning_rate=0.1)
    with pytest.raises(SolverSpecError, match="does not parse"):
        solver_text(solver_mode="TPU")


def test_solver_field_table_matches_caffes_solver_parameter():
    """The writer's own table against caffe_pb2: every field it knows, rendered with a value of
    its kind (twice where repeated), parses back to that value in Caffe's SolverParameter."""
    from google.protobuf.descriptor import FieldDescriptor as FD
    proto = caffe_pb2.SolverParameter.DESCRIPTOR.fields_by_name
    sample = {"string": "a \\ \"b\"", "int": 7, "float": 0.25, "bool": True}
    params = {k: (ENUMS[k][-1] if kind == "enum" else sample[kind]) for k, kind in FIELDS.items()}
    params.update({k: [params[k], params[k]] for k in REPEATED})
    parsed = text_format.Parse(render(params, ["a comment"]), caffe_pb2.SolverParameter())
    for key, value in params.items():
        field = proto[key]
        assert (field.label == FD.LABEL_REPEATED) == (key in REPEATED), key
        got = getattr(parsed, key)
        if field.enum_type:
            got = field.enum_type.values_by_number[got].name
        assert (list(got) if key in REPEATED else got) == value, key
    with pytest.raises(SolverSpecError, match="takes one value"):
        render({"max_iter": [1, 2]})


def test_architecture_doc_tables_are_current():
    """docs/architecture.md holds exactly the tables the code computes (no drift)."""
    from prototxt_gen import report
    doc = (REPO / "docs" / "architecture.md").read_text()
    for name, table in (("Table I", report.table_i_markdown()),
                        ("deviations", report.deviations_markdown()),
                        ("summary", report.summary_markdown()),
                        ("breakdown", report.breakdown_markdown())):
        assert table in doc, f"docs/architecture.md: the {name} table is stale; " \
                             f"rerun `mrfnet doc-tables` and paste"
    assert (REPO / "docs" / "img" / "mrfnet_p2_deploy.png").stat().st_size > 10_000
