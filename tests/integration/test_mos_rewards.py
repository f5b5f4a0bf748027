"""The reward hook on a real tiny megatron-core model (one gloo rank in one spawned process, which runs the
four scenarios one after the other: one start-up instead of four):
- at step 0 (theta = theta0) Diff rewards are exactly 1 for every dataset with a live theta0 and with the
  reference pool in padded reward rows; within 1e-6 with the pool in packed rows (the pool and the reward
  mini-batch pack their examples into different rows, so float rounding differs);
- CosSim from our hook equals the same formula computed with HF transformers on the exported model (1e-4);
- a non-finite reward skips the update without stopping training."""

import math

import pytest
import torch

from tests.distributed import run_distributed

BASE = ["mixing.strategy=mos", "mixing.reward_batch=4", "mixing.reference_pool=12", "checkpoint.every=0",
        "checkpoint.save_final=false"]


def _trainer(run_dir: str, *overrides: str):
    from mos_nemo.config import compose_config
    from mos_nemo.engine.training.loop import Trainer
    from mos_nemo.engine.parallel import initialize_parallel

    config = compose_config("tiny_cpu", [f"run.dir={run_dir}", *BASE, *overrides])
    parallel = initialize_parallel(config.parallel.tp, config.parallel.pp, config.run.seed)
    return Trainer(config, parallel)


def _diff_at_step0(run_dir: str, reference: str, pack: bool = True):
    from mos_nemo.engine.parallel import destroy_parallel

    trainer = _trainer(run_dir, "mixing.reward=diff", f"mixing.reference={reference}", f"mixing.reward_pack={pack}")
    trainer.reward_hook.prepare(trainer.model[0])
    rewards = [trainer.reward_hook.compute_raw_rewards(trainer.model[0], step) for step in (0, 1)]
    destroy_parallel()
    return [r.tolist() for r in rewards]  # plain lists: tensors cannot outlive the spawned rank


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["diff_pool_padded", "diff_live"])
def test_diff_reward_is_exactly_one_before_training(scenarios, scenario):
    for reward in scenarios[scenario]:  # two different reward mini-batches, same untouched model
        assert reward == [1.0, 1.0, 1.0]


@pytest.mark.slow
def test_diff_reward_with_the_pool_in_packed_rows_is_one_before_training(scenarios):
    for reward in scenarios["diff_pool"]:
        assert max(abs(r - 1.0) for r in reward) < 1e-6


def _cossim_hook_and_export(run_dir: str):
    from mos_nemo.data import reward_example_ids
    from mos_nemo.engine.hf.weights import export_hf
    from mos_nemo.engine.parallel import destroy_parallel

    trainer = _trainer(run_dir, "mixing.reward=cossim", "train.max_steps=3", "mixing.update_every=100")
    trainer.run()  # a few real training steps, so the model is no longer its random init
    step = 7
    rewards = trainer.reward_hook.compute_raw_rewards(trainer.model[0], step)
    export_hf(trainer.model[0].module, trainer.hf_config, f"{run_dir}/hf", tokenizer_dir=trainer.tokenizer_dir)
    examples = [
        [ds[int(k)]["input_ids"].tolist() for k in reward_example_ids(len(ds), 4, trainer.config.run.seed, step, i)]
        for i, ds in enumerate(trainer.datasets)
    ]
    destroy_parallel()
    return rewards.tolist(), examples


@pytest.mark.slow
def test_cossim_hook_matches_hf_transformers_on_the_exported_model(scenarios):
    import transformers

    from mos_nemo.mixing import cossim_reward

    rewards, examples = scenarios["cossim"]
    model = transformers.AutoModelForCausalLM.from_pretrained(scenarios["root"] / "cossim" / "hf",
                                                              torch_dtype=torch.float32).eval()
    pooled = []
    with torch.no_grad():
        for dataset in examples:
            # e_j: mean over the example's tokens of the last hidden state after the final norm (Eq. 7)
            e = [model.model(input_ids=torch.tensor([ids])).last_hidden_state[0].double().mean(0) for ids in dataset]
            pooled.append(torch.stack(e).mean(0))
    expected = cossim_reward(torch.stack(pooled))
    assert float((torch.tensor(rewards, dtype=torch.float64) - expected).abs().max()) < 1e-4
    assert not torch.allclose(expected, torch.ones(3, dtype=torch.float64))  # datasets really differ


def _training_with_nan_rewards(run_dir: str):
    from mos_nemo.engine.parallel import destroy_parallel
    from mos_nemo.mixing import MosMixer

    trainer = _trainer(run_dir, "mixing.reward=cossim", "train.max_steps=6", "mixing.update_every=2")
    real = MosMixer.raw_rewards
    # fault injection around the real reward: the second update sees a NaN for one dataset
    calls = []

    def flaky(self, inputs):
        rewards = real(self, inputs)
        calls.append(inputs.step)
        if len(calls) == 2:
            rewards[1] = math.nan
        return rewards

    MosMixer.raw_rewards = flaky
    try:
        last = trainer.run()
    finally:
        MosMixer.raw_rewards = real
    state = (trainer.reward_hook.mixer.num_updates, trainer.reward_hook.mixer.num_skipped)
    destroy_parallel()
    return last, state


@pytest.mark.slow
def test_non_finite_reward_skips_the_update_and_training_goes_on(scenarios):
    from mos_nemo.logs import read_jsonl

    last, (updates, skipped) = scenarios["nan"]
    tmp_path = scenarios["root"] / "nan"
    assert last == 6 and (updates, skipped) == (2, 1)
    mixture = read_jsonl(tmp_path / "mixture.jsonl")
    assert [r["step"] for r in mixture] == [0, 2, 4, 6]
    assert mixture[2]["weights"] == mixture[1]["weights"]  # the skipped update kept p
    assert mixture[3]["weights"] != mixture[2]["weights"]
    assert len(read_jsonl(tmp_path / "train.jsonl")) == 6


def _all_scenarios(root: str) -> dict:
    return {"diff_pool": _diff_at_step0(f"{root}/diff_pool", "pool"),
            "diff_pool_padded": _diff_at_step0(f"{root}/diff_pool_padded", "pool", pack=False),
            "diff_live": _diff_at_step0(f"{root}/diff_live", "live"),
            "cossim": _cossim_hook_and_export(f"{root}/cossim"),
            "nan": _training_with_nan_rewards(f"{root}/nan")}


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory):
    root = tmp_path_factory.mktemp("rewards")
    return {**run_distributed(_all_scenarios, 1, str(root))[0], "root": root}
