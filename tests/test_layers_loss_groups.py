"""Loss-weight groups: defaults move emphasis coarse -> fine; schedule lookups and caffe-train
stages agree with each other; malformed schedules are rejected with a message."""
import numpy as np
import pytest

from layers import loss_groups as lg
from layers.errors import LossGroupError


@pytest.mark.parametrize("paths", range(1, 7))
def test_default_groups_shape_and_validity(paths):
    groups = lg.default_groups(paths)
    assert [g["start_fraction"] for g in groups] == [0.0, 0.25, 0.5, 0.75]
    assert lg.validate_groups(groups, paths) == groups
    for g in groups:
        assert len(g["weights"]) == paths
        assert sum(g["weights"]) == pytest.approx(paths, abs=1e-5)


@pytest.mark.parametrize("paths", range(2, 7))
def test_default_groups_move_weight_from_coarse_to_fine(paths):
    groups = lg.default_groups(paths)
    first, last = groups[0]["weights"], groups[-1]["weights"]
    assert np.argmax(first) == 0 and np.argmax(last) == paths - 1
    assert all(w > 0 for g in groups for w in g["weights"])  # every path stays supervised
    # the finest scale's share grows and the coarsest's shrinks group by group
    fine = [g["weights"][-1] for g in groups]
    coarse = [g["weights"][0] for g in groups]
    assert all(x < y for x, y in zip(fine, fine[1:]))
    assert all(x > y for x, y in zip(coarse, coarse[1:]))


def test_default_groups_four_paths_values():
    w = [g["weights"] for g in lg.default_groups(4)]
    base = np.array([1, 0.5, 0.25, 0.125])
    np.testing.assert_allclose(w[0], base * 4 / base.sum(), atol=1e-6)
    np.testing.assert_allclose(w[3], base[::-1] * 4 / base.sum(), atol=1e-6)


def test_weights_at_piecewise_constant():
    groups = lg.default_groups(4)
    assert lg.weights_at(groups, 0.0) == groups[0]["weights"]
    assert lg.weights_at(groups, 0.2499) == groups[0]["weights"]
    assert lg.weights_at(groups, 0.25) == groups[1]["weights"]
    assert lg.weights_at(groups, 0.9) == groups[3]["weights"]
    assert lg.weights_at(groups, 1.5) == groups[3]["weights"]
    for bad in (-0.1, float("nan"), "x"):
        with pytest.raises(LossGroupError):
            lg.weights_at(groups, bad)


@pytest.mark.parametrize("max_iter", [1, 2, 3, 4, 7, 10, 99, 100, 1000, 12345])
def test_stages_agree_with_weights_at(max_iter):
    groups = lg.default_groups(3)
    stages = lg.stage_iterations(groups, max_iter)
    assert stages[0]["start_iter"] == 0 and stages[-1]["end_iter"] == max_iter
    covered = []
    for i, s in enumerate(stages):
        assert s["stage"] == i and s["start_iter"] < s["end_iter"]
        for it in range(s["start_iter"], s["end_iter"]):
            covered.append(it)
            assert lg.weights_at(groups, it / max_iter) == s["weights"]
    assert covered == list(range(max_iter))


def test_stages_for_round_numbers():
    stages = lg.stage_iterations(lg.default_groups(4), 1000)
    assert [(s["start_iter"], s["end_iter"]) for s in stages] == \
        [(0, 250), (250, 500), (500, 750), (750, 1000)]
    assert [s["group"] for s in lg.stage_iterations(lg.default_groups(4), 2)] == [0, 2]


@pytest.mark.parametrize("groups,match", [
    ([], "non-empty"),
    ([{"start_fraction": 0.1, "weights": [1, 1]}], "start at 0.0"),
    ([{"start_fraction": 0.0, "weights": [1, 1]}, {"start_fraction": 0.0, "weights": [1, 1]}],
     "increase strictly"),
    ([{"start_fraction": 0.0, "weights": [1, 1]}, {"start_fraction": 1.0, "weights": [1, 1]}],
     r"\[0, 1\)"),
    ([{"start_fraction": 0.0, "weights": [1, 1, 1]}], "3 weights .* for 2 scales"),
    ([{"start_fraction": 0.0, "weights": [1, -1]}], ">= 0"),
    ([{"start_fraction": 0.0, "weights": [0, 0]}], "> 0"),
    ([{"start_fraction": 0.0, "weight": [1, 1]}], "exactly the keys"),
    ([{"start_fraction": "soon", "weights": [1, 1]}], "must be a number"),
])
def test_validate_groups_rejects(groups, match):
    with pytest.raises(LossGroupError, match=match):
        lg.validate_groups(groups, 2)


def test_bad_arguments():
    for bad in (0, 7, 2.0, None):
        with pytest.raises(LossGroupError, match="num_paths"):
            lg.default_groups(bad)
    with pytest.raises(LossGroupError, match="max_iter"):
        lg.stage_iterations(lg.default_groups(2), 0)


def test_group_starts_and_active_group_agree_with_stage_iterations():
    """One boundary rule: the plot's switch lines, the trainer's group and the `caffe train`
    stages all start a group at the same iteration."""
    for paths, max_iter in ((4, 1000), (3, 7), (2, 10001)):
        groups = lg.default_groups(paths)
        stages = lg.stage_iterations(groups, max_iter)
        assert lg.group_starts(groups, max_iter) == [s["start_iter"] for s in stages[1:]]
        for s in stages:
            for it in (s["start_iter"], s["end_iter"] - 1):
                assert lg.active_group(groups, it / max_iter) == s["group"]
