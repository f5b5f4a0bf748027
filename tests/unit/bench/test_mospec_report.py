"""bench/mospec_report.py: the paired test against scipy's own paired t-test where the two agree by
construction, the fixed point it compares the target's weight with, and hand-made runs whose answers are
worked out in the comments; every preset of bench/mospec.py composes into a valid config."""

import pytest

from bench.mospec_report import analyse, format_table, paired_difference, predicted_weight


def test_with_equal_examples_the_interval_is_scipys_paired_t_interval():
    """When every example of a seed differs by the same amount, the example term is 0 and the test is a
    paired t-test over seeds, which scipy computes independently."""
    from scipy import stats

    shifts = [-0.05, -0.02, -0.04]
    baseline = [[1.0 + 0.1 * i for i in range(6)] for _ in shifts]
    treated = [[value + shift for value in row] for row, shift in zip(baseline, shifts)]
    result = paired_difference(treated, baseline)
    seeds_treated = [sum(row) / len(row) for row in treated]
    seeds_baseline = [sum(row) / len(row) for row in baseline]
    interval = stats.ttest_rel(seeds_treated, seeds_baseline).confidence_interval(0.95)
    assert result["mean"] == pytest.approx(sum(shifts) / 3)
    assert result["se_examples"] == pytest.approx(0.0, abs=1e-12)
    assert result["dof"] == pytest.approx(2.0)
    assert result["ci95"] == pytest.approx([interval.low, interval.high])


def test_example_noise_widens_the_interval_and_adds_degrees_of_freedom():
    baseline = [[1.0] * 8 for _ in range(3)]
    seeds_only = paired_difference([[0.9] * 8, [0.95] * 8, [0.85] * 8], baseline)
    noisy = [[0.9 + (0.05 if i % 2 else -0.05) * (1 + i / 8) for i in range(8)],
             [0.95 + (0.05 if i % 2 else -0.05) * (1 + i / 8) for i in range(8)],
             [0.85 + (0.05 if i % 2 else -0.05) * (1 + i / 8) for i in range(8)]]
    both = paired_difference(noisy, baseline)
    assert both["se"] > seeds_only["se"] and both["dof"] > seeds_only["dof"]


def test_predicted_weight_is_the_updates_fixed_point_with_the_target_doubled():
    # Diff rewards 0.9 (target, doubled to 1.8), 0.9, 0.6, 0.3: p*_t = 2 x 0.9 / (2.7 + 0.9) = 0.5
    assert predicted_weight({"t": 1.8, "a": 0.9, "b": 0.6, "c": 0.3}, "t") == pytest.approx(0.5)


def _run(seed, final, weights_t=0.25, rewards=None, batches_t=3):
    names = ("t", "a")
    validation = [{"step": 0, "loss": {"t": 2.0, "a": 1.0}}, {"step": 10, "loss": final}]
    mixture = [{"step": 0, "weights": dict.fromkeys(names, 0.5), "rewards": None, "counts": {"t": 0, "a": 0}}]
    if rewards:  # one update at step 5; weights then hold until step 10
        mixture.append({"step": 5, "weights": {"t": weights_t, "a": 1 - weights_t}, "rewards": rewards,
                        "counts": {"t": 3, "a": 2}})
    examples = [{"step": 0, "nll": {"t": [2.0, 2.0]}}, {"step": 10, "nll": {"t": [final["t"]] * 2}}]
    train = [{"step": k, "dataset": "t" if k <= batches_t else "a"} for k in range(1, 11)]
    return {"seed": seed, "validation": validation, "examples": examples, "mixture": mixture, "train": train}


def test_analysis_pairs_the_runs_and_reports_losses_relative_to_their_start():
    runs = {"uni": [_run(1, {"t": 1.8, "a": 0.5}), _run(2, {"t": 1.9, "a": 0.6})],
            "mospec": [_run(1, {"t": 1.7, "a": 0.6}, 0.7, {"t": 1.6, "a": 0.4}, batches_t=6),
                       _run(2, {"t": 1.7, "a": 0.6}, 0.9, {"t": 1.6, "a": 0.4}, batches_t=7)]}
    report = analyse(runs, "t")
    assert report["final_predicted"] == pytest.approx(0.8)  # 1.6 / (1.6 + 0.4)
    assert report["final_weight"] == pytest.approx(0.8)  # (0.7 + 0.9) / 2
    # seed 1: 0.5 for 5 steps, then 0.7 for 5 -> 0.6; seed 2: 0.5 then 0.9 -> 0.7; mean 0.65
    assert report["mean_weight_over_run"] == pytest.approx(0.65)
    assert report["target_loss"]["per_seed"] == pytest.approx([-0.1, -0.2])
    assert report["target_batches"] == {"uni": 3, "mospec": 6.5}  # counted in train.jsonl
    # a: uni (0.5/1 - 1, 0.6/1 - 1) = (-0.5, -0.4); mospec (-0.4, -0.4); paired mospec - uni = (+0.1, 0.0)
    assert report["relative_change"]["a"]["difference"] == pytest.approx(0.05)
    assert report["relative_change"]["t"]["uni"] == pytest.approx((1.8 / 2 - 1 + 1.9 / 2 - 1) / 2)
    table = format_table(report)
    assert "target weight: final 0.800, predicted p* at the last update 0.800" in table


@pytest.mark.parametrize("preset", ["cpu", "quick"])
def test_every_preset_composes_into_a_valid_config(preset, tmp_path):
    from bench.convergence import run_overrides
    from bench.mospec import PRESETS, STRATEGIES, TARGET
    from mos_nemo.config import compose_config

    for strategy in STRATEGIES:
        overrides = run_overrides(PRESETS[preset], strategy, 1, tmp_path / strategy, STRATEGIES)
        config = compose_config("smollm2_demo", overrides)
        assert config.validation.holdout > 0 and config.train.max_steps == PRESETS[preset]["steps"]
        assert (config.mixing.target == TARGET) == (strategy == "mospec")
        assert not config.checkpoint.export_hf  # no reference model to export: this study has no doremi
