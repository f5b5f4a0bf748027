"""MoS in the loop under parallelism: `mixing.strategy=mos`, for CosSim and Diff, at (TP, PP, DP) = (1,1,1),
(2,1,1), (1,2,1), (1,1,2) over gloo, reward examples packed into rows (the default), and at (1,1,1) with one
example per row (`mixing.reward_pack=false`). Rewards and new weights in mixture.jsonl must agree within 1e-5
across the five, and with the golden values in tests/integration/golden/tiny_cpu.json within 1e-4.

The three two-process layouts of both rewards train one after the other in one process group (one start-up
instead of six torchrun launches); the entry point itself is covered by test_train_parallel.py.
"""

import pytest

from mos_nemo.logs import read_jsonl
from tests.distributed import train_in_one_group
from tests.integration.golden import load_golden

REWARDS = ("cossim", "diff")
LAYOUTS = {"tp1": (1, []), "tp2": (2, ["parallel.tp=2"]), "pp2": (2, ["parallel.pp=2"]), "dp2": (2, []),
           "tp1_padded_rows": (1, ["mixing.reward_pack=false"])}
MOS = ["mixing.strategy=mos", "mixing.reward_batch=4", "mixing.reference_pool=16", "mixing.update_every=3",
       "train.max_steps=6", "checkpoint.every=0", "checkpoint.save_final=false"]


@pytest.fixture(scope="module")
def mixtures(tmp_path_factory):
    """{(reward, layout): mixture.jsonl records} for every reward and layout."""
    root = tmp_path_factory.mktemp("layouts")
    by_size = {1: [], 2: []}
    for reward in REWARDS:
        for layout, (nproc, extra) in LAYOUTS.items():
            by_size[nproc].append(((reward, layout), [*MOS, f"mixing.reward={reward}", *extra]))
    for nproc, runs in by_size.items():
        train_in_one_group([(root / "-".join(key), overrides) for key, overrides in runs], nproc)
    return {key: read_jsonl(root / "-".join(key) / "mixture.jsonl") for runs in by_size.values() for key, _ in runs}


def assert_close_by_name(got: dict, expected: dict, tolerance: float, what: str) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        assert abs(got[name] - expected[name]) <= tolerance, f"{what}[{name}]: {got[name]} vs {expected[name]}"


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("reward", REWARDS)
def test_rewards_and_weights_agree_across_tp_pp_dp(reward, mixtures):
    reference = mixtures[reward, "tp1"]
    assert [r["step"] for r in reference] == [0, 3, 6]
    assert reference[1]["rewards_raw"] is not None
    # the mixture really moved away from the prior: this is a learned blend, not a static one
    assert max(abs(reference[2]["weights"][n] - reference[0]["weights"][n]) for n in reference[0]["weights"]) > 1e-3
    golden = load_golden()["mos_weights"][reward]
    for layout in LAYOUTS:
        records = mixtures[reward, layout]
        assert [r["step"] for r in records] == [r["step"] for r in reference], layout
        for got, expected in zip(records[1:], reference[1:]):
            for key in ("rewards_raw", "rewards", "weights"):
                assert_close_by_name(got[key], expected[key], 1e-5, f"{layout} step {got['step']} {key}")
            assert got["counts"] == expected["counts"], layout
        for got in records:  # a regression that moves every layout alike is caught here
            assert_close_by_name(got["weights"], golden[str(got["step"])], 1e-4, f"golden {layout} step {got['step']}")
