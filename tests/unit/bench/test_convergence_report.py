"""bench/convergence_report.py: steps to a target loss, the paired speed-up, and the table, on hand-made
curves whose answers are worked out in the comments; and every preset of bench/convergence.py composes
into a valid config."""

import pytest

from bench.convergence_report import analyse, format_table, steps_to_reach


def test_steps_to_reach_interpolates_between_evaluation_points():
    steps, losses = [0, 10, 20], [3.0, 2.0, 1.0]
    assert steps_to_reach(steps, losses, 3.5) == 0.0  # already there at the start
    assert steps_to_reach(steps, losses, 2.0) == 10.0
    assert steps_to_reach(steps, losses, 1.5) == pytest.approx(15.0)  # halfway from 2.0 (step 10) to 1.0 (20)
    assert steps_to_reach(steps, losses, 0.5) is None


def _run(seed, means, weights=None):
    datasets = ("a", "b")
    validation = [{"step": 10 * k, "mean": m, "loss": {"a": m - 0.5, "b": m + 0.5}} for k, m in enumerate(means)]
    mixture = [{"step": 0, "weights": dict.fromkeys(datasets, 0.5)},
               {"step": 20, "weights": weights or dict.fromkeys(datasets, 0.5)}]
    return {"seed": seed, "validation": validation, "mixture": mixture}


def test_analysis_pairs_seeds_and_reports_the_speed_up_over_the_best_heuristic():
    runs = {
        "prop": [_run(1, [3.0, 2.5, 2.2]), _run(2, [3.0, 2.6, 2.4])],  # final mean 2.3
        "uni": [_run(1, [3.0, 2.4, 2.0]), _run(2, [3.0, 2.4, 2.2])],  # final mean 2.1: the best heuristic
        "mos_diff_ema": [_run(1, [3.0, 2.0, 1.8], {"a": 0.7, "b": 0.3}), _run(2, [3.0, 2.2, 2.0])],
    }
    report = analyse(runs, steps=20)
    assert report["best_heuristic"] == "uni" and report["target"] == pytest.approx(2.1)
    assert report["best_mos"] == "mos_diff_ema"
    # seed 1: uni reaches its own final 2.0 at step 20; MoS reaches 2.0 at step 10 -> 2.0x.
    # seed 2: uni's final 2.2 at step 20; MoS: 3.0 -> 2.2 at step 10 -> 2.0x.
    assert report["speedup_per_seed"] == [pytest.approx(2.0), pytest.approx(2.0)]
    assert report["final_difference"]["values"] == [pytest.approx(-0.2), pytest.approx(-0.2)]
    # target 2.1 on the seed-mean curves: uni [3, 2.4, 2.1] at step 20; MoS [3, 2.1, 1.9] at step 10;
    # prop [3, 2.55, 2.3] never.
    strategies = report["strategies"]
    assert strategies["uni"]["steps_to_target"] == pytest.approx(20.0)
    assert strategies["mos_diff_ema"]["steps_to_target"] == pytest.approx(10.0)
    assert strategies["prop"]["steps_to_target"] is None
    assert strategies["mos_diff_ema"]["final_weights"] == {"a": pytest.approx(0.6), "b": pytest.approx(0.4)}
    table = format_table(report)
    assert table.splitlines()[-1].startswith("speed-up of mos_diff_ema over uni")
    assert "2.00x" in table.splitlines()[-1]


def test_a_mos_run_that_never_reaches_the_target_has_no_speed_up():
    runs = {"uni": [_run(1, [3.0, 2.0, 1.0])], "mos_cossim_ema": [_run(1, [3.0, 2.5, 2.0])]}
    report = analyse(runs, steps=20)
    assert report["speedup_per_seed"] == [None] and report["speedup"] is None
    assert "not reached in any seed" in format_table(report)


@pytest.mark.parametrize("preset", ["cpu", "quick", "h100"])
def test_every_preset_composes_into_a_valid_config(preset, tmp_path):
    from bench.convergence import PRESETS, STRATEGIES, run_overrides
    from mos_nemo.config import compose_config
    from mos_nemo.config_checks import validate

    for strategy in STRATEGIES:
        config = compose_config("smollm2_demo", run_overrides(PRESETS[preset], strategy, 1, tmp_path / strategy))
        validate(config, world_size=1, check_paths=False)
        assert config.validation.holdout > 0 and config.train.max_steps == PRESETS[preset]["steps"]
