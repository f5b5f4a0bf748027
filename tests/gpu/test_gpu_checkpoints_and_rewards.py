"""Checkpoints move between the TE and the local spec in both directions (when TE imports), and a MoS reward
computed on the GPU in bf16 equals HF transformers' fp32 CPU computation within bf16 tolerance; Diff is
exactly 1 at step 0 on the GPU too with one example per reward row, and within bf16 rounding of 1 with
packed reward rows (the default)."""

import pytest
import torch

from mos_nemo.engine.hf.tiny import save_tiny_hf_model
from mos_nemo.engine.hf.verify import fixed_tokens, megatron_logits
from mos_nemo.engine.hf.weights import load_hf_weights
from mos_nemo.engine.model.gpt import build_model, load_hf_config
from mos_nemo.engine.model.layer_spec import transformer_engine_available


@pytest.mark.skipif(not transformer_engine_available(), reason="needs Transformer Engine (NGC container)")
@pytest.mark.parametrize("save_te,load_te", [(False, True), (True, False)], ids=["local->te", "te->local"])
def test_checkpoint_moves_between_te_and_local_spec(single_process_group, tmp_path, save_te, load_te):
    from mos_nemo.engine.hf.model_checkpoint import load_mcore_checkpoint, save_mcore_checkpoint

    folder = tmp_path / "hf"
    save_tiny_hf_model(folder, "llama", seed=2)
    config = load_hf_config(folder)
    source = build_model(config, params_dtype=torch.float32, use_te=save_te)
    load_hf_weights(source, folder, config)
    save_mcore_checkpoint(source, config, tmp_path / "ckpt", tokenizer_dir=folder)
    target = build_model(config, params_dtype=torch.float32, use_te=load_te)
    load_mcore_checkpoint(target, tmp_path / "ckpt")
    tokens = fixed_tokens(config.vocab_size, 2, 32, seed=5)
    device = single_process_group.device
    assert torch.allclose(megatron_logits(source, tokens, device), megatron_logits(target, tokens, device),
                          atol=2e-3)


def _trainer(run_dir, *overrides):
    from mos_nemo.config import compose_config
    from mos_nemo.engine.training.loop import Trainer
    from mos_nemo.engine.parallel import current_parallel_state

    base = ["model.dtype=bf16", "mixing.strategy=mos", "mixing.reward_batch=4", "mixing.reference_pool=12",
            "checkpoint.every=0", "checkpoint.save_final=false"]
    config = compose_config("tiny_cpu", [f"run.dir={run_dir}", *base, *overrides])
    return Trainer(config, current_parallel_state())


@pytest.mark.slow
def test_diff_is_exactly_one_at_step_zero_on_gpu(single_process_group, tmp_path):
    # one example per row: the pool and the reward mini-batch run each example in the same row shape
    trainer = _trainer(tmp_path, "mixing.reward=diff", "mixing.reward_pack=false")
    trainer.reward_hook.prepare(trainer.model[0])
    for step in (0, 1):
        assert trainer.reward_hook.compute_raw_rewards(trainer.model[0], step).tolist() == [1.0, 1.0, 1.0]


@pytest.mark.slow
def test_diff_with_packed_reward_rows_is_one_at_step_zero_on_gpu_within_bf16(single_process_group, tmp_path):
    # packed rows (the default): the pool and the reward mini-batch pack an example beside different
    # neighbours, so only bf16 rounding separates the two NLLs
    trainer = _trainer(tmp_path, "mixing.reward=diff")
    trainer.reward_hook.prepare(trainer.model[0])
    for step in (0, 1):
        assert max(abs(r - 1.0) for r in trainer.reward_hook.compute_raw_rewards(trainer.model[0], step).tolist()) < 2e-2


@pytest.mark.slow
def test_cossim_on_gpu_matches_the_cpu_computation(single_process_group, tmp_path):
    import transformers

    from mos_nemo.data import reward_example_ids
    from mos_nemo.engine.hf.weights import export_hf
    from mos_nemo.mixing import cossim_reward

    trainer = _trainer(tmp_path, "mixing.reward=cossim", "train.max_steps=3", "mixing.update_every=100")
    trainer.run()
    rewards = trainer.reward_hook.compute_raw_rewards(trainer.model[0], 7)
    export_hf(trainer.model[0].module, trainer.hf_config, tmp_path / "hf", tokenizer_dir=trainer.tokenizer_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    pooled = []
    with torch.no_grad():
        for i, ds in enumerate(trainer.datasets):
            ids = [ds[int(k)]["input_ids"] for k in reward_example_ids(len(ds), 4, trainer.config.run.seed, 7, i)]
            e = [model.model(input_ids=x[None]).last_hidden_state[0].double().mean(0) for x in ids]
            pooled.append(torch.stack(e).mean(0))
    expected = cossim_reward(torch.stack(pooled))
    assert float((rewards.double() - expected).abs().max()) < 2e-2  # bf16 model vs fp32 CPU reference
