"""The reweightable blend: realised frequencies, weight changes, resume, data-parallel slices, epochs."""

import json

import pytest
import torch

from mos_nemo.data import ReweightableBlend, reward_example_ids
from mos_nemo.errors import MosCheckpointError, MosValueError

NAMES = ["math", "med", "general", "nlp"]
SIZES = [262, 52, 93, 626]


def chi_square_p_value(observed: list[int], probabilities: list[float]) -> float:
    """Pearson's chi-square goodness-of-fit p-value (categories with probability 0 must have no count)."""
    observed_t = torch.tensor(observed, dtype=torch.float64)
    expected = observed_t.sum() * torch.tensor(probabilities, dtype=torch.float64)
    used = expected > 0
    statistic = (((observed_t - expected) ** 2)[used] / expected[used]).sum()
    degrees = int(used.sum()) - 1
    return float(torch.special.gammaincc(torch.tensor(degrees / 2.0, dtype=torch.float64), statistic / 2))


def test_batch_level_frequencies_match_the_weights():
    weights = [0.5, 0.3, 0.15, 0.05]
    blend = ReweightableBlend(SIZES, NAMES, global_batch_size=8, weights=weights, mode="batch", seed=11)
    for _ in range(3000):
        draw = blend.draw()
        assert (draw.dataset_ids == draw.dataset_ids[0]).all()  # the whole batch from one dataset
    observed = [blend.batch_counts[name] for name in NAMES]
    assert sum(observed) == 3000
    assert [blend.counts[name] for name in NAMES] == [8 * count for count in observed]
    assert chi_square_p_value(observed, weights) > 1e-3
    assert chi_square_p_value(observed, [0.25] * 4) < 1e-9  # the test has the power to see a wrong mixture


def test_sample_level_frequencies_match_the_weights():
    weights = [0.1, 0.2, 0.3, 0.4]
    blend = ReweightableBlend(SIZES, NAMES, global_batch_size=64, weights=weights, mode="sample", seed=5)
    mixed_batches = sum(len(torch.unique(blend.draw().dataset_ids)) > 1 for _ in range(200))
    assert mixed_batches == 200
    observed = [blend.counts[name] for name in NAMES]
    assert sum(observed) == 200 * 64 and sum(blend.batch_counts.values()) == 0
    assert chi_square_p_value(observed, weights) > 1e-3
    assert chi_square_p_value(observed, [0.25] * 4) < 1e-9


@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_zero_weight_never_draws_and_a_change_takes_effect_at_the_next_batch(mode):
    blend = ReweightableBlend(SIZES, NAMES, global_batch_size=16, weights=[1, 0, 1, 0], mode=mode, seed=2)
    for _ in range(300):
        assert set(blend.draw().dataset_ids.tolist()) <= {0, 2}
    assert blend.counts["med"] == 0 and blend.counts["nlp"] == 0
    blend.set_weights([0, 0, 0, 5])
    assert torch.equal(blend.weights, torch.tensor([0, 0, 0, 1], dtype=torch.float64))
    assert (blend.draw().dataset_ids == 3).all()  # the very next batch


def test_dataset_of_step_t_depends_only_on_seed_step_and_current_weights():
    first, second = [1, 1, 1, 1], [0.7, 0.1, 0.1, 0.1]
    changed = ReweightableBlend(SIZES, NAMES, 8, weights=first, seed=9)
    always_second = ReweightableBlend(SIZES, NAMES, 8, weights=second, seed=9)
    for step in range(200):
        if step == 50:
            changed.set_weights(second)
        a, b = changed.draw(), always_second.draw()
        if step >= 50:
            assert a.dataset_ids[0] == b.dataset_ids[0]  # cursors differ, the dataset choice does not
    other_seed = ReweightableBlend(SIZES, NAMES, 8, weights=second, seed=10)
    redo = ReweightableBlend(SIZES, NAMES, 8, weights=second, seed=9)
    assert [int(redo.draw().dataset_ids[0]) for _ in range(50)] != [int(other_seed.draw().dataset_ids[0])
                                                                     for _ in range(50)]


def run_with_schedule(blend: ReweightableBlend, steps: range) -> list[tuple]:
    """Draw over `steps`, changing weights at fixed steps as a MoS controller would."""
    schedule = {10: [0.1, 0.6, 0.2, 0.1], 20: [0.0, 0.5, 0.0, 0.5], 27: [0.25, 0.25, 0.25, 0.25]}
    out = []
    for step in steps:
        if step in schedule:
            blend.set_weights(schedule[step])
        draw = blend.draw()
        assert draw.step == step
        out.append((draw.dataset_ids.tolist(), draw.example_ids.tolist()))
    return out


@pytest.mark.parametrize("mode", ["batch", "sample"])
@pytest.mark.parametrize("k", [0, 13, 20, 29])
def test_resume_after_k_steps_reproduces_the_uninterrupted_stream(mode, k):
    def make():
        return ReweightableBlend([7, 30, 5, 64], NAMES, global_batch_size=12, mode=mode, seed=123)

    uninterrupted = run_with_schedule(make(), range(40))
    first = make()
    head = run_with_schedule(first, range(k))
    state = json.loads(json.dumps(first.state_dict()))  # survives a plain-text checkpoint
    resumed = make()
    resumed.load_state_dict(state)
    tail = run_with_schedule(resumed, range(k, 40))
    assert head + tail == uninterrupted
    assert resumed.counts == make_counts(uninterrupted)


def make_counts(stream) -> dict[str, int]:
    counts = dict.fromkeys(NAMES, 0)
    for dataset_ids, _ in stream:
        for dataset in dataset_ids:
            counts[NAMES[dataset]] += 1
    return counts


@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_two_data_parallel_ranks_take_disjoint_slices_of_the_same_global_batch(mode):
    # Datasets large enough that no epoch ends within the run: then no example may repeat in a global batch.
    sizes = [4000, 3500, 3300, 5000]
    ranks = [ReweightableBlend(sizes, NAMES, 32, mode=mode, seed=4, dp_rank=r, dp_size=2) for r in (0, 1)]
    for _ in range(100):
        draws = [blend.draw() for blend in ranks]
        assert torch.equal(draws[0].dataset_ids, draws[1].dataset_ids)
        assert torch.equal(draws[0].example_ids, draws[1].example_ids)
        (d0, e0), (d1, e1) = draws[0].local(), draws[1].local()
        assert len(e0) == len(e1) == 16
        assert torch.equal(torch.cat([d0, d1]), draws[0].dataset_ids)
        assert torch.equal(torch.cat([e0, e1]), draws[0].example_ids)
        pairs0 = set(zip(d0.tolist(), e0.tolist()))
        pairs1 = set(zip(d1.tolist(), e1.tolist()))
        assert len(pairs0) == len(pairs1) == 16 and not pairs0 & pairs1  # never one example on both ranks
        if mode == "batch":
            assert len(set(d0.tolist()) | set(d1.tolist())) == 1
        assert torch.equal(draws[1].local_example_ids, e1)


def test_each_epoch_is_a_fresh_permutation_so_small_datasets_are_upsampled():
    blend = ReweightableBlend([10, 1000], ["small", "big"], global_batch_size=4, weights=[1, 0], seed=0)
    stream = torch.cat([blend.draw().example_ids for _ in range(15)])  # 60 examples = 6 epochs of 10
    epochs = stream.view(6, 10)
    for epoch in epochs:
        assert sorted(epoch.tolist()) == list(range(10))
    assert len({tuple(epoch.tolist()) for epoch in epochs}) == 6  # reshuffled each epoch
    assert blend.state_dict()["epochs"] == [6, 0] and blend.state_dict()["cursors"] == [0, 0]


def test_reward_example_ids_are_keyed_and_distinct_when_possible():
    ids = reward_example_ids(size=100, count=64, seed=1, step=200, dataset_index=2)
    assert ids.dtype == torch.int64 and len(set(ids.tolist())) == 64 and ids.max() < 100
    assert torch.equal(ids, reward_example_ids(100, 64, 1, 200, 2))
    assert not torch.equal(ids, reward_example_ids(100, 64, 1, 300, 2))
    assert not torch.equal(ids, reward_example_ids(100, 64, 1, 200, 3))
    small = reward_example_ids(size=5, count=12, seed=1, step=0, dataset_index=0)
    assert sorted(torch.bincount(small, minlength=5).tolist()) == [2, 2, 2, 3, 3]


def test_bad_arguments_and_mismatched_state_are_clear_errors():
    with pytest.raises(MosValueError, match="not all 0"):
        ReweightableBlend(SIZES, NAMES, 8, weights=[0, 0, 0, 0])
    with pytest.raises(MosValueError, match="must be finite, >= 0"):
        ReweightableBlend(SIZES, NAMES, 8, weights=[1, -1, 1, 1])
    with pytest.raises(MosValueError, match="got 3 weights for 4 datasets"):
        ReweightableBlend(SIZES, NAMES, 8).set_weights([1, 1, 1])
    with pytest.raises(MosValueError, match="not divisible by dp_size=3"):
        ReweightableBlend(SIZES, NAMES, 8, dp_size=3, dp_rank=0)
    with pytest.raises(MosValueError, match="must all be >= 1"):
        ReweightableBlend([5, 0, 3, 2], NAMES, 8)
    with pytest.raises(MosValueError, match="duplicates"):
        ReweightableBlend([5, 5], ["a", "a"], 8)
    state = ReweightableBlend(SIZES, NAMES, 8, seed=1).state_dict()
    with pytest.raises(MosCheckpointError, match="sizes="):
        ReweightableBlend([1, 2, 3, 4], NAMES, 8, seed=1).load_state_dict(state)
    with pytest.raises(MosCheckpointError, match="seed="):
        ReweightableBlend(SIZES, NAMES, 8, seed=2).load_state_dict(state)
