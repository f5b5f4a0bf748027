"""The GPU path's logic, checked on CPU (issue: first H100 / NGC run): TE detection by megatron's own flag,
every parameter on the target device, fusions only with TE, DDP overlap only with the distributed optimizer
on GPU, CUDA_DEVICE_MAX_CONNECTIONS, attention inputs (no mask unpacked; THD or block mask packed), packed
loss == unpacked loss, top-1 agreement in verify."""

import pytest
import torch
import torch.nn.functional as F

from mos_nemo.data import collate_sft
from mos_nemo.engine.hf.tiny import save_tiny_hf_model, tiny_hf_config
from mos_nemo.engine.hf.verify import compare_with_hf
from mos_nemo.engine.hf.weights import load_hf_weights
from mos_nemo.engine.model.gpt import (build_model, fusion_settings, load_hf_config,
                                       transformer_config_from_hf)
from mos_nemo.engine.model.attention import DocumentSpans
from mos_nemo.engine.model.inputs import model_inputs, schedule_shape
from mos_nemo.engine.model.layer_spec import RMSNorm, transformer_engine_available
from mos_nemo.engine.parallel import cuda_environment
from mos_nemo.engine.training.step import ddp_config

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama")
    save_tiny_hf_model(folder, "llama", seed=4)
    return folder


def test_te_detection_is_megatron_cores_flag():
    from megatron.core.models.gpt import gpt_layer_specs

    assert transformer_engine_available() is bool(gpt_layer_specs.HAVE_TE)
    assert transformer_engine_available() is False  # this machine has no TE: the local spec is used


def test_every_parameter_lands_on_the_target_device(parallel, monkeypatch):
    model = build_model(tiny_hf_config("gemma"), params_dtype=torch.float32, device="meta")
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    assert tensors and all(t.device.type == "meta" for _, t in tensors), [n for n, t in tensors if t.is_meta is False]
    # On a GPU megatron's layers allocate on torch.cuda.current_device() (use_cpu_initialization=False);
    # the norm must follow them there rather than stay on CPU ("meta" stands in for the GPU here).
    config = transformer_config_from_hf(tiny_hf_config("llama"), tp=1, pp=1, params_dtype=torch.float32)
    config.use_cpu_initialization = False
    monkeypatch.setattr(torch.cuda, "current_device", lambda: "meta")
    assert RMSNorm(config, 64).weight.device.type == "meta"


def test_fusions_follow_transformer_engine_and_the_activation():
    te_silu = fusion_settings(True, F.silu, grad_accum_kernel=True)
    assert te_silu == dict(gradient_accumulation_fusion=True, bias_activation_fusion=True, bias_dropout_fusion=True,
                           masked_softmax_fusion=False, persist_layer_norm=False, apply_rope_fusion=True,
                           cross_entropy_loss_fusion=True)
    gemma_act = transformer_config_from_hf(tiny_hf_config("gemma"), tp=1, pp=1,
                                           params_dtype=torch.float32).activation_func
    assert not fusion_settings(True, gemma_act, grad_accum_kernel=True)["bias_activation_fusion"]  # tanh GELU
    assert not fusion_settings(True, F.silu, grad_accum_kernel=False)["gradient_accumulation_fusion"]  # no apex
    assert not any(fusion_settings(False, F.silu, grad_accum_kernel=True).values())
    on_cpu = transformer_config_from_hf(tiny_hf_config("llama"), tp=1, pp=1, params_dtype=torch.float32)
    assert not any(getattr(on_cpu, key) for key in te_silu)  # CPU: everything off
    # The fused config is what megatron accepts with TE; here megatron itself refuses fused RoPE without TE.
    with pytest.raises(Exception, match="(?i)apply_rope_fusion|TE"):
        transformer_config_from_hf(tiny_hf_config("llama"), tp=1, pp=1, params_dtype=torch.float32, fused=True)


def test_overlap_only_with_the_distributed_optimizer_on_gpu():
    on = ddp_config(use_distributed_optimizer=True, on_gpu=True)
    assert on.overlap_grad_reduce and on.overlap_param_gather and on.use_distributed_optimizer
    for args in ((False, True), (True, False), (False, False)):
        off = ddp_config(*args)
        assert not off.overlap_grad_reduce and not off.overlap_param_gather


def test_cuda_device_max_connections_is_set_on_gpu_only():
    assert cuda_environment({}, cuda_available=True) == {"CUDA_DEVICE_MAX_CONNECTIONS": "1"}
    assert cuda_environment({"CUDA_DEVICE_MAX_CONNECTIONS": "8"}, cuda_available=True) == {}  # user's choice
    assert cuda_environment({}, cuda_available=False) == {}


def _examples(vocab: int):
    generator = torch.Generator().manual_seed(11)
    out = []
    for n in (9, 5, 12, 3):
        ids = torch.randint(3, vocab, (n,), generator=generator)
        mask = torch.zeros(n, dtype=torch.bool)
        mask[n // 2:] = True  # second half is the "response"
        out.append({"input_ids": ids, "loss_mask": mask})
    return out


def test_attention_inputs_no_mask_unpacked_thd_or_document_spans_packed():
    examples = _examples(100)
    unpacked = collate_sft(examples, pad_id=0, pad_to_multiple_of=8)
    for use_te in (False, True):
        kwargs = model_inputs(unpacked, use_te)
        assert kwargs["attention_mask"] is None and "packed_seq_params" not in kwargs  # causal, fused kernels
        assert schedule_shape(unpacked, use_te) == tuple(unpacked["tokens"].shape[::-1])
    packed = collate_sft(examples, pad_id=0, seq_length=16, pack=True)  # longest first: [12 3 pad1] [9 5 pad2]
    assert packed["cu_seqlens"].tolist() == [0, 12, 15, 16, 25, 30, 32] and packed["max_seqlen"] == 12
    local = model_inputs(packed, use_te=False)
    assert local["attention_mask"] == DocumentSpans((((0, 12, False), (12, 15, False), (15, 16, True)),
                                                     ((0, 9, False), (9, 14, False), (14, 16, True))))
    te = model_inputs(packed, use_te=True)
    assert te["attention_mask"] is None and te["input_ids"].shape == (1, 32) and te["labels"].shape == (1, 32)
    params = te["packed_seq_params"]
    assert params.qkv_format == "thd" and params.cu_seqlens_q.dtype == torch.int32
    assert params.max_seqlen_q == params.max_seqlen_kv == 12
    # cu_seqlens cut the flattened rows exactly where the segment ids change
    flat = packed["segment_ids"].reshape(-1)
    starts = [0] + [i for i in range(1, 32) if flat[i] != flat[i - 1] or i % 16 == 0]
    assert starts == params.cu_seqlens_q.tolist()[:-1]
    assert schedule_shape(packed, use_te=True) == (32, 1) and schedule_shape(packed, use_te=False) == (16, 2)


def test_packed_loss_equals_unpacked_loss_per_example(parallel, llama):
    config = load_hf_config(llama)
    model = build_model(config, params_dtype=torch.float32)
    load_hf_weights(model, llama, config)
    model.eval()
    examples = _examples(config.vocab_size)
    unpacked = collate_sft(examples, pad_id=0, pad_to_multiple_of=8)
    packed = collate_sft(examples, pad_id=0, seq_length=16, pack=True)
    with torch.no_grad():
        alone = model(**model_inputs(unpacked, use_te=False))  # [4, 16] no mask, causal
        together = model(**model_inputs(packed, use_te=False))  # [2, 16] block-diagonal mask

    def masked_sum(loss, batch):
        return float((loss * batch["loss_mask"]).sum()), float(batch["loss_mask"].sum())

    (a, na), (b, nb) = masked_sum(alone, unpacked), masked_sum(together, packed)
    assert na == nb > 0 and abs(a - b) < 1e-4 * na
    # and the unpacked rows without any mask equal each example run alone at its own length
    for row, example in enumerate(examples):
        single = collate_sft([example], pad_id=0, pad_to_multiple_of=1)
        with torch.no_grad():
            loss = model(**model_inputs(single, use_te=False))
        n = example["input_ids"].numel()
        assert torch.allclose(alone[row, : n - 1], loss[0, : n - 1], atol=1e-5)


def test_verify_reports_top1_agreement(parallel, llama):
    config = load_hf_config(llama)
    model = build_model(config, params_dtype=torch.float32)
    load_hf_weights(model, llama, config)
    same = compare_with_hf(model, llama, config.vocab_size, CPU)
    assert same.top1_agreement == 1.0 and same.max_abs_diff < 1e-4
    with torch.no_grad():  # a broken conversion: the output layer's rows scrambled
        model.output_layer.weight.copy_(model.output_layer.weight.roll(1, dims=0))
    broken = compare_with_hf(model, llama, config.vocab_size, CPU)
    assert broken.top1_agreement < 0.2 and broken.max_abs_diff > 1e-2


def test_reward_width_is_the_longest_example_rounded_to_128_and_capped():
    import numpy as np

    from mos_nemo.data import TokenizedDataset
    from mos_nemo.data.dataset import DatasetStats
    from mos_nemo.engine.training.reward_pass import reward_width

    def dataset(name, lengths):
        return TokenizedDataset.from_examples(
            name, [(np.arange(n, dtype=np.int64), np.ones(n, dtype=bool)) for n in lengths],
            DatasetStats(name=name, format="messages", format_detected=False))

    short, longer = dataset("a", [5, 40, 7]), dataset("b", [130, 3])
    assert reward_width([short], seq_length=2048) == 128
    assert reward_width([short, longer], seq_length=2048) == 256  # run-wide: the longest of all datasets
    assert reward_width([short, longer], seq_length=200) == 200  # never beyond seq_length


def test_export_writes_sharded_safetensors_that_transformers_loads_bit_for_bit(parallel, tmp_path):
    import json

    import transformers
    from safetensors.torch import load_file

    from mos_nemo.engine.hf.weights import export_hf

    folder = tmp_path / "qwen2"
    config = save_tiny_hf_model(folder, "qwen2", seed=6)
    model = build_model(config, params_dtype=torch.float32)
    load_hf_weights(model, folder, config)
    out = tmp_path / "export"
    out.mkdir()
    # a stale single file from an earlier export must not shadow the new shards
    (out / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    export_hf(model, config, out, tokenizer_dir=folder, max_shard_bytes=64 * 1024)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 2 and not (out / "model.safetensors").exists()
    original = load_file(folder / "model.safetensors")
    exported = {}
    for name in files:
        exported.update(load_file(out / name))
    assert sorted(exported) == sorted(original) == sorted(index["weight_map"])
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in original.values())
    for name, tensor in original.items():
        assert torch.equal(exported[name].view(torch.int32), tensor.view(torch.int32)), name
    loaded = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    reference = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    for (name, a), (_, b) in zip(loaded.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name
