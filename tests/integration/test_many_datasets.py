"""64 datasets from one glob (`per_file: true`, generated fixture files), tiny_cpu on 2 processes (DP = 2), MoS
with a reward budget (8 of 64 datasets scored per update, in rotation), CosSim and Diff: each run trains,
resumes exactly (k steps, stop, resume, k more == 2k steps: same losses, mixture.jsonl byte for byte, with
periodic saves on), scores exactly K datasets per update after the first, and plots readably."""

import json
import random

import pytest

from mos_nemo.logs import read_jsonl
from tests.distributed import train_in_one_group

N, K, L, STEPS = 64, 8, 2, 8
WORDS = "alpha beta gamma delta kappa sigma omega river stone cloud seven green paper light".split()


def _write_fixtures(folder):
    rng = random.Random(0)
    folder.mkdir()
    for i in range(N):
        with open(folder / f"skill_{i:02d}.jsonl", "w") as handle:
            for _ in range(4 + i % 5):
                length = 2 + (i * 7) % 23 + rng.randrange(4)  # each dataset has its own lengths
                text = " ".join(rng.choice(WORDS) for _ in range(length))
                handle.write(json.dumps({"instruction": f"Task {i}: repeat {text}", "output": text}) + "\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("many")
    _write_fixtures(root / "data")
    common = [f"datasets=[{{source: '{root}/data/skill_*.jsonl', per_file: true, format: instruction}}]",
              "mixing.strategy=mos", "mixing.mode=sample", "mixing.update_every=2", f"mixing.reward_batch={L}",
              f"mixing.reward_budget={K * L}", "mixing.reference_pool=8", "mixing.inner_steps=20",
              f"train.max_steps={STEPS}", "checkpoint.every=3"]
    plan = []
    for reward in ("cossim", "diff"):
        overrides = [*common, f"mixing.reward={reward}"]
        plan += [(root / reward / "whole", overrides), (root / reward / "split", [*overrides, f"train.stop_after={STEPS // 2}"]),
                 (root / reward / "split", overrides)]
    last_steps = train_in_one_group(plan, world_size=2, timeout_s=1200)
    assert last_steps == [STEPS, STEPS // 2, STEPS] * 2
    return root


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("reward", ["cossim", "diff"])
def test_64_datasets_train_resume_exactly_and_score_k_per_update(runs, reward):
    whole, split = runs / reward / "whole", runs / reward / "split"
    losses = [[r["loss"] for r in read_jsonl(d / "train.jsonl")] for d in (whole, split)]
    assert len(losses[0]) == STEPS and losses[0] == losses[1]
    assert (whole / "mixture.jsonl").read_bytes() == (split / "mixture.jsonl").read_bytes()
    mixture = read_jsonl(whole / "mixture.jsonl")
    assert [r["step"] for r in mixture] == [0, 2, 4, 6, 8] and len(mixture[0]["weights"]) == N
    assert sorted(mixture[0]["weights"]) == [f"skill_{i:02d}" for i in range(N)]
    changed = [sum(after["rewards"][n] != before["rewards"][n] for n in after["rewards"])
               for before, after in zip(mixture[1:], mixture[2:])]
    assert changed == [K, K, K]  # the budget: K datasets scored per update, the others' rewards carried exactly
    assert [len(r["rewards_raw"]) for r in mixture[1:]] == [N, K, K, K]  # raw rewards of the scored datasets only
    assert max(abs(mixture[-1]["weights"][n] - mixture[0]["weights"][n]) for n in mixture[0]["weights"]) > 1e-4


@pytest.mark.slow
@pytest.mark.distributed
def test_64_datasets_plot_and_table_stay_readable(runs):
    from mos_nemo.plot import plot_runs, weights_table

    table = weights_table(runs / "cossim" / "whole").splitlines()
    assert len(table) == 2 + N and table[0].startswith(f"{N} datasets")  # one row per dataset, movers first
    png = plot_runs([runs / "cossim" / "whole"], runs / "many.png")
    assert png.stat().st_size > 10_000
