"""GPTModel from HF configs, single process (TP=PP=1): logits and per-token loss match HF transformers,
packed rows behave like separate examples, and bad configs fail with errors that name the fix."""

import pytest
import torch
import torch.nn.functional as F

from mos_nemo.engine.hf.verify import fixed_tokens, hf_logits, max_logit_difference, megatron_logits
from mos_nemo.engine.hf.weights import load_hf_weights
from mos_nemo.engine.model.gpt import (attention_mask_from_segments, build_model, hf_rope_inv_freq, load_hf_config,
                                   transformer_config_from_hf)
from mos_nemo.engine.parallel import initialize_parallel
from mos_nemo.engine.hf.tiny import save_tiny_hf_model, tiny_hf_config
from mos_nemo.errors import MosConfigError

FAMILIES = ("llama", "qwen2", "gemma")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_hf")
    return {family: (root / family, save_tiny_hf_model(root / family, family, seed=3)) for family in FAMILIES}


def _loaded(hf_dirs, family):
    folder, _ = hf_dirs[family]
    config = load_hf_config(folder)
    model = build_model(config, params_dtype=torch.float32)
    load_hf_weights(model, folder, config)
    return folder, config, model.eval()


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_hf_and_verify_detects_a_wrong_weight(parallel, hf_dirs, family):
    folder, config, model = _loaded(hf_dirs, family)
    assert max_logit_difference(model, folder, config.vocab_size, CPU) < 1e-4
    with torch.no_grad():  # a conversion bug of this size must show up in verify
        model.decoder.layers[1].pre_mlp_layernorm.weight.add_(0.05)
    assert max_logit_difference(model, folder, config.vocab_size, CPU) > 1e-3


VARIANTS = {  # the other side of each family's tiny default: tying, RoPE scaling, no GQA
    "llama-tied-linear-rope": ("llama", dict(tie_word_embeddings=True, rope_parameters={
        "rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0})),
    "qwen2-untied-mha": ("qwen2", dict(tie_word_embeddings=False, num_key_value_heads=4)),
    "gemma-mqa": ("gemma", dict(num_key_value_heads=1, num_hidden_layers=2)),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variants_match_hf(parallel, tmp_path, variant):
    family, overrides = VARIANTS[variant]
    config = save_tiny_hf_model(tmp_path, family, seed=5, **overrides)
    model = build_model(config, params_dtype=torch.float32)
    load_hf_weights(model, tmp_path, config)
    assert max_logit_difference(model, tmp_path, config.vocab_size, CPU) < 1e-4


@pytest.mark.parametrize("family", FAMILIES)
def test_per_token_loss_matches_hf_cross_entropy(parallel, hf_dirs, family):
    folder, config, model = _loaded(hf_dirs, family)
    tokens = fixed_tokens(config.vocab_size, 2, 24, seed=7)  # [b, s]
    labels = torch.roll(tokens, -1, dims=1)
    segments = torch.ones_like(tokens)
    with torch.no_grad():
        loss = model(input_ids=tokens, position_ids=torch.arange(24).expand(2, 24),
                     attention_mask=attention_mask_from_segments(segments), labels=labels)
    expected = F.cross_entropy(hf_logits(folder, tokens, torch.float32).transpose(1, 2), labels, reduction="none")
    assert loss.shape == (2, 24)
    assert torch.allclose(loss, expected, atol=1e-4)


def test_packed_row_equals_examples_run_separately(parallel, hf_dirs):
    _, config, model = _loaded(hf_dirs, "llama")
    first, second = fixed_tokens(config.vocab_size, 1, 7, seed=1), fixed_tokens(config.vocab_size, 1, 5, seed=2)
    packed = torch.cat([first, second, torch.zeros(1, 4, dtype=torch.long)], dim=1)  # [1, 16], 4 padding
    segments = torch.tensor([[1] * 7 + [2] * 5 + [0] * 4])
    with torch.no_grad():
        together = model(input_ids=packed, position_ids=torch.arange(16)[None],
                         attention_mask=attention_mask_from_segments(segments))  # [1, 16, V]
    alone_first = megatron_logits(model, first, CPU)
    alone_second = megatron_logits(model, second, CPU)
    assert torch.isfinite(together).all()
    assert torch.allclose(together[:, :7], alone_first, atol=1e-4)
    assert torch.allclose(together[:, 7:12], alone_second, atol=1e-4)


def test_family_features_reach_the_megatron_config():
    gemma = transformer_config_from_hf(tiny_hf_config("gemma"), tp=1, pp=1, params_dtype=torch.float32)
    assert gemma.layernorm_zero_centered_gamma and gemma.kv_channels == 32 and gemma.num_query_groups == 2
    qwen2 = transformer_config_from_hf(tiny_hf_config("qwen2"), tp=2, pp=2, params_dtype=torch.float32)
    assert qwen2.add_qkv_bias and not qwen2.add_bias_linear and qwen2.gated_linear_unit
    assert qwen2.hidden_dropout == qwen2.attention_dropout == 0.0
    llama = tiny_hf_config("llama")
    default_freq = 1.0 / (500000.0 ** (torch.arange(0, 16, 2, dtype=torch.float) / 16))
    assert not torch.allclose(hf_rope_inv_freq(llama), default_freq)  # Llama-3.1 scaling is applied


def test_tied_model_has_no_separate_output_weight(parallel):
    tied = build_model(tiny_hf_config("qwen2"), params_dtype=torch.float32)
    untied = build_model(tiny_hf_config("llama"), params_dtype=torch.float32)
    assert "output_layer.weight" not in dict(tied.named_parameters())
    assert "output_layer.weight" in dict(untied.named_parameters())


def test_bad_configs_name_the_setting_to_fix(parallel, tmp_path):
    with pytest.raises(MosConfigError, match="model.hf_path"):
        load_hf_config(tmp_path)
    with pytest.raises(MosConfigError, match="model_type='mistral'"):
        transformer_config_from_hf(_mistral(), tp=1, pp=1, params_dtype=torch.float32)
    with pytest.raises(MosConfigError, match="parallel.tp=4"):
        transformer_config_from_hf(tiny_hf_config("llama"), tp=4, pp=1, params_dtype=torch.float32)
    with pytest.raises(MosConfigError, match="parallel.pp=3"):
        transformer_config_from_hf(tiny_hf_config("llama"), tp=1, pp=3, params_dtype=torch.float32)
    with pytest.raises(MosConfigError, match="parallel.tp"):
        initialize_parallel(tp=2, pp=1, seed=0)  # world size 1


def _mistral():
    import transformers

    return transformers.MistralConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=320)


def test_checkpoint_round_trip_in_both_layouts(parallel, hf_dirs, tmp_path):
    from megatron.core import dist_checkpointing

    from mos_nemo.engine.hf.model_checkpoint import (checkpoint_tokenizer_dir, load_checkpoint_hf_config,
                                                  load_mcore_checkpoint, save_mcore_checkpoint)

    folder, config, source = _loaded(hf_dirs, "gemma")
    save_mcore_checkpoint(source, config, tmp_path / "model_ckpt", tokenizer_dir=folder)
    (tmp_path / "train_ckpt").mkdir()  # a training checkpoint keeps the model under "model"
    dist_checkpointing.save({"model": source.sharded_state_dict()}, str(tmp_path / "train_ckpt"))
    stored, original = load_checkpoint_hf_config(tmp_path / "model_ckpt").to_dict(), config.to_dict()
    stored.pop("_name_or_path"), original.pop("_name_or_path")
    assert stored == original
    assert (checkpoint_tokenizer_dir(tmp_path / "model_ckpt") / "tokenizer.json").is_file()
    expected = dict(source.named_parameters())
    for layout in ("model_ckpt", "train_ckpt"):
        fresh = build_model(config, params_dtype=torch.float32)  # random init, different from source
        load_mcore_checkpoint(fresh, tmp_path / layout)
        for name, param in fresh.named_parameters():
            assert torch.equal(param, expected[name]), (layout, name)
