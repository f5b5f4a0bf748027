"""Every mixer in the loop under parallelism: MoS (CosSim, Diff), ODM, DoReMi, and DoReMi under a reward
budget (2 of the 3 datasets scored per update, in rotation) at (TP, PP, DP) = (1,1,1), (2,1,1), (1,2,1),
(1,1,2) over gloo, reward examples packed into rows (the default), and at (1,1,1) with one example per row
(`mixing.reward_pack=false`; not for ODM, which scores nothing). Rewards and new weights in mixture.jsonl
must agree within 1e-5 across the layouts, and MoS's with the golden values in
tests/integration/golden_tiny_cpu.json within 1e-4. DoReMi's reference is a model trained first on the
uniform mixture. ODM and DoReMi (with and without the budget) also resume exactly on two processes: k
steps, stop, resume, k more == 2k steps (train.jsonl's losses and mixture.jsonl byte for byte); k = 3 is
not a multiple of their update_every = 2, so ODM's observed-but-not-yet-applied training losses, and the
budget's kept excess losses, must travel in the checkpoint.

All two-process runs train one after the other in one process group (one start-up instead of a torchrun
launch each); the entry point itself is covered by test_train_parallel.py.
"""

import math

import pytest

from mos_nemo.logs import read_jsonl
from tests.distributed import train_in_one_group
from tests.integration.golden import load_golden

REWARDS = ("cossim", "diff")  # the MoS runs whose weights are golden
LAYOUTS = {"tp1": (1, []), "tp2": (2, ["parallel.tp=2"]), "pp2": (2, ["parallel.pp=2"]), "dp2": (2, []),
           "tp1_padded_rows": (1, ["mixing.reward_pack=false"])}
COMMON = ["mixing.reward_batch=4", "mixing.reference_pool=16", "train.max_steps=6", "checkpoint.every=0"]
MOS = ["mixing.strategy=mos", "mixing.update_every=3", *COMMON, "checkpoint.save_final=false"]
MIXERS = {  # the run of each mixer: mixing.* overrides
    "cossim": [*MOS, "mixing.reward=cossim"],
    "diff": [*MOS, "mixing.reward=diff"],
    "odm": ["mixing.strategy=odm", "mixing.update_every=2", *COMMON],
    "doremi": ["mixing.strategy=doremi", "mixing.update_every=2", *COMMON],  # + the reference model, below
    "doremi_budget": ["mixing.strategy=doremi", "mixing.update_every=2", "mixing.reward_budget=8", *COMMON],
}
RESUMED = ("odm", "doremi", "doremi_budget")


def layouts(mixer: str) -> list[str]:
    """The layouts a mixer runs at: ODM scores nothing, so how reward rows are laid out is moot for it."""
    return [layout for layout in LAYOUTS if not (mixer == "odm" and layout == "tp1_padded_rows")]
K = 3


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The run folders: {(mixer, layout)} and {(mixer, "split")} (k steps, then resumed to 2k at DP=2)."""
    root = tmp_path_factory.mktemp("layouts")
    # DoReMi's reference: a model trained on the uniform mixture (DoReMi's recipe). Against theta0 the excess
    # loss of a model that is learning is 0 everywhere and the weights would never move.
    reference = ["mixing.strategy=static", "mixing.tau=inf", "train.max_steps=8", "checkpoint.every=0",
                 "checkpoint.export_hf=true"]
    mixers = {name: [*overrides, f"mixing.reference_model={root / 'reference' / 'hf'}"] if "doremi" in name
              else overrides for name, overrides in MIXERS.items()}
    by_size = {1: [(root / "reference", reference)], 2: []}
    for mixer, overrides in mixers.items():
        for layout in layouts(mixer):
            nproc, extra = LAYOUTS[layout]
            by_size[nproc].append((root / f"{mixer}-{layout}", [*overrides, *extra]))
    for mixer in RESUMED:
        split = root / f"{mixer}-split"
        by_size[2] += [(split, [*mixers[mixer], f"train.stop_after={K}"]), (split, mixers[mixer])]
    for nproc, group in by_size.items():
        train_in_one_group(group, nproc)
    return root


def assert_close_by_name(got: dict | None, expected: dict | None, tolerance: float, what: str) -> None:
    if expected is None:  # DoReMi logs no smoothed reward
        assert got is None, what
        return
    assert got.keys() == expected.keys()
    for name in expected:
        if math.isnan(expected[name]):  # ODM: a dataset not drawn since the last update has no new reward
            assert math.isnan(got[name]), f"{what}[{name}]: {got[name]} vs NaN"
        else:
            assert abs(got[name] - expected[name]) <= tolerance, f"{what}[{name}]: {got[name]} vs {expected[name]}"


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("mixer", MIXERS)
def test_rewards_and_weights_agree_across_tp_pp_dp(mixer, runs):
    mixtures = {layout: read_jsonl(runs / f"{mixer}-{layout}" / "mixture.jsonl") for layout in layouts(mixer)}
    reference = mixtures["tp1"]
    every = 3 if mixer in REWARDS else 2
    assert [r["step"] for r in reference] == list(range(0, 7, every))
    assert reference[1]["rewards_raw"] is not None
    # the mixture really moved away from where it started: a learned blend, not a static one
    assert max(abs(reference[-1]["weights"][n] - reference[0]["weights"][n]) for n in reference[0]["weights"]) > 1e-3
    if mixer == "doremi_budget":  # the first update scores all 3 datasets, every later one the rotation's 2
        assert [len(r["rewards_raw"]) for r in reference[1:]] == [3, 2, 2]
    golden = load_golden()["mos_weights"].get(mixer)
    for layout, records in mixtures.items():
        assert [r["step"] for r in records] == [r["step"] for r in reference], layout
        for got, expected in zip(records[1:], reference[1:]):
            for key in ("rewards_raw", "rewards", "weights"):
                assert_close_by_name(got[key], expected[key], 1e-5, f"{layout} step {got['step']} {key}")
            assert got["counts"] == expected["counts"], layout
        for got in records if golden else []:  # a regression that moves every layout alike is caught here
            assert_close_by_name(got["weights"], golden[str(got["step"])], 1e-4, f"golden {layout} step {got['step']}")


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("mixer", RESUMED)
def test_k_steps_resume_k_steps_equals_2k_steps_at_dp2(mixer, runs):
    whole, split = runs / f"{mixer}-dp2", runs / f"{mixer}-split"
    assert (split / "checkpoints" / f"step_{K:07d}" / "meta.json").is_file()
    def losses(run):
        return [(r["step"], r["loss"], r["grad_norm"], r["dataset"]) for r in read_jsonl(run / "train.jsonl")]

    assert [step for step, *_ in losses(split)] == list(range(1, 2 * K + 1))
    assert losses(split) == losses(whole)
    assert (split / "mixture.jsonl").read_bytes() == (whole / "mixture.jsonl").read_bytes()
