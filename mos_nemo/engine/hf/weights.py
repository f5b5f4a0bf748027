"""HF safetensors <-> megatron-core GPTModel weights, for this rank's TP/PP shard.

Name and layout mapping (HF layer i = megatron ``layer.layer_number - 1``; "rows"/"cols" = split along
dim 0/1 across TP ranks, "whole" = replicated):
| megatron (this stage)                              | HF                                          | split  |
| -------------------------------------------------- | ------------------------------------------- | ------ |
| embedding.word_embeddings.weight                   | model.embed_tokens.weight                   | rows   |
| decoder.layers.j.input_layernorm.weight            | model.layers.i.input_layernorm.weight       | whole  |
| decoder.layers.j.self_attention.linear_qkv.weight  | q_proj, k_proj, v_proj (.weight)            | qkv    |
| decoder.layers.j.self_attention.linear_qkv.bias    | q_proj, k_proj, v_proj (.bias, Qwen2)       | qkv    |
| decoder.layers.j.self_attention.linear_proj.weight | model.layers.i.self_attn.o_proj.weight      | cols   |
| decoder.layers.j.pre_mlp_layernorm.weight          | model.layers.i.post_attention_layernorm     | whole  |
| decoder.layers.j.mlp.linear_fc1.weight             | gate_proj, up_proj                          | gate_up|
| decoder.layers.j.mlp.linear_fc2.weight             | model.layers.i.mlp.down_proj.weight         | cols   |
| decoder.final_layernorm.weight                     | model.norm.weight                           | whole  |
| output_layer.weight                                | lm_head.weight (embed_tokens when tied)     | rows   |
With the TE spec the norms are ``linear_qkv.layer_norm_weight`` / ``linear_fc1.layer_norm_weight``.
"qkv": megatron interleaves per KV group g: [q heads of g, k_g, v_g]; a TP rank holds a contiguous run of
groups. "gate_up": a TP rank holds [gate shard; up shard] (SwiGLU / GeGLU, gate first).
"""

from __future__ import annotations

import json
import re
import shutil
from contextlib import ExitStack
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import save_file

from mos_nemo.errors import MosCheckpointError

from megatron.core import parallel_state

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja",
                   "chat_template.json", "generation_config.json")
_LAYER = re.compile(r"decoder\.layers\.(\d+)\.(.+)")
_LAYER_PARAMS = {
    "input_layernorm.weight": ("whole", ["input_layernorm.weight"]),
    "self_attention.linear_qkv.layer_norm_weight": ("whole", ["input_layernorm.weight"]),
    "self_attention.linear_qkv.weight": ("qkv", ["self_attn.q_proj.weight", "self_attn.k_proj.weight",
                                                 "self_attn.v_proj.weight"]),
    "self_attention.linear_qkv.bias": ("qkv", ["self_attn.q_proj.bias", "self_attn.k_proj.bias",
                                               "self_attn.v_proj.bias"]),
    "self_attention.linear_proj.weight": ("cols", ["self_attn.o_proj.weight"]),
    "pre_mlp_layernorm.weight": ("whole", ["post_attention_layernorm.weight"]),
    "mlp.linear_fc1.layer_norm_weight": ("whole", ["post_attention_layernorm.weight"]),
    "mlp.linear_fc1.weight": ("gate_up", ["mlp.gate_proj.weight", "mlp.up_proj.weight"]),
    "mlp.linear_fc2.weight": ("cols", ["mlp.down_proj.weight"]),
}


def hf_source(model, name: str, tied: bool) -> tuple[str, list[str]]:
    """(split kind, HF tensor names) of the megatron parameter ``name`` of ``model``."""
    if name == "embedding.word_embeddings.weight":
        return "rows", ["model.embed_tokens.weight"]
    if name == "output_layer.weight":
        return "rows", ["model.embed_tokens.weight" if tied else "lm_head.weight"]
    if name == "decoder.final_layernorm.weight":
        return "whole", ["model.norm.weight"]
    match = _LAYER.fullmatch(name)
    if match is None or match.group(2) not in _LAYER_PARAMS:
        raise MosCheckpointError(f"no HF counterpart for megatron parameter {name!r}")
    hf_layer = model.decoder.layers[int(match.group(1))].layer_number - 1
    kind, suffixes = _LAYER_PARAMS[match.group(2)]
    return kind, [f"model.layers.{hf_layer}.{suffix}" for suffix in suffixes]


class SafetensorsReader:
    """Reads whole tensors or row/column ranges from an HF folder (single file or sharded index)."""

    def __init__(self, folder, stack: ExitStack):
        folder = Path(folder)
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
        elif (folder / "model.safetensors").is_file():
            weight_map = None
        else:
            raise MosCheckpointError(
                f"{folder}: no model.safetensors or model.safetensors.index.json; save the HF model with "
                "save_pretrained(..., safe_serialization=True)."
            )
        self._folder, self._stack, self._files = folder, stack, {}
        if weight_map is None:
            weight_map = {key: "model.safetensors" for key in self._open("model.safetensors").keys()}
        self._weight_map = weight_map

    def _open(self, filename: str):
        if filename not in self._files:
            self._files[filename] = self._stack.enter_context(
                safe_open(str(self._folder / filename), framework="pt"))
        return self._files[filename]

    def slice(self, name: str):
        if name not in self._weight_map:
            raise MosCheckpointError(f"{self._folder}: tensor {name!r} missing from the safetensors files.")
        return self._open(self._weight_map[name]).get_slice(name)


def _qkv_shard(reader, names, hf_config, tp: int, tp_rank: int) -> torch.Tensor:
    """This rank's interleaved [q_g; k_g; v_g] rows for its KV groups (weight [rows, h] or bias [rows])."""
    head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads
    groups = getattr(hf_config, "num_key_value_heads", None) or hf_config.num_attention_heads
    heads_per_group = hf_config.num_attention_heads // groups
    local = groups // tp
    g0, g1 = tp_rank * local, (tp_rank + 1) * local
    q = reader.slice(names[0])[g0 * heads_per_group * head_dim:g1 * heads_per_group * head_dim]
    k = reader.slice(names[1])[g0 * head_dim:g1 * head_dim]
    v = reader.slice(names[2])[g0 * head_dim:g1 * head_dim]
    tail = q.shape[1:]  # (h,) for weights, () for biases
    parts = [q.reshape(local, heads_per_group * head_dim, *tail), k.reshape(local, head_dim, *tail),
             v.reshape(local, head_dim, *tail)]
    return torch.cat(parts, dim=1).reshape(-1, *tail)


def _hf_shard(reader, kind: str, names: list[str], shape, hf_config, tp: int, tp_rank: int) -> torch.Tensor:
    """Read only the part of the HF tensors that this TP rank's parameter of ``shape`` holds."""
    if kind == "whole":
        return reader.slice(names[0])[:]
    if kind == "rows":
        return reader.slice(names[0])[tp_rank * shape[0]:(tp_rank + 1) * shape[0]]
    if kind == "cols":
        return reader.slice(names[0])[:, tp_rank * shape[1]:(tp_rank + 1) * shape[1]]
    if kind == "gate_up":
        half = shape[0] // 2
        gate, up = (reader.slice(n)[tp_rank * half:(tp_rank + 1) * half] for n in names)
        return torch.cat([gate, up], dim=0)
    return _qkv_shard(reader, names, hf_config, tp, tp_rank)


@torch.no_grad()
def load_hf_weights(model, hf_dir, hf_config) -> None:
    """Copy this rank's TP/PP shard of the HF safetensors in ``hf_dir`` into ``model`` (reads no more)."""
    tp = parallel_state.get_tensor_model_parallel_world_size()
    tp_rank = parallel_state.get_tensor_model_parallel_rank()
    tied = bool(getattr(hf_config, "tie_word_embeddings", False))
    with ExitStack() as stack:
        reader = SafetensorsReader(hf_dir, stack)
        for name, param in model.named_parameters():
            kind, names = hf_source(model, name, tied)
            shard = _hf_shard(reader, kind, names, param.shape, hf_config, tp, tp_rank)
            if shard.shape != param.shape:
                raise MosCheckpointError(
                    f"{hf_dir}: {names} give a shard of shape {tuple(shard.shape)} for {name} of shape "
                    f"{tuple(param.shape)}; the config.json does not match the weights."
                )
            param.copy_(shard)


def _gather_tp(local: torch.Tensor, kind: str, hf_config, tp: int) -> list[torch.Tensor] | None:
    """Full HF tensors (in the order of ``hf_source``'s names) on TP rank 0 from every TP rank's shard; None
    on the other TP ranks, which only send (no full copy there)."""
    if kind == "whole":
        return [local]
    if tp == 1:
        shards = [local]
    else:
        is_root = parallel_state.get_tensor_model_parallel_rank() == 0
        shards = [torch.empty_like(local) for _ in range(tp)] if is_root else None
        dist.gather(local.contiguous(), shards, dst=parallel_state.get_tensor_model_parallel_src_rank(),
                    group=parallel_state.get_tensor_model_parallel_group())
        if not is_root:
            return None
    if kind in ("rows", "cols"):
        return [torch.cat(shards, dim=0 if kind == "rows" else 1)]
    if kind == "gate_up":
        halves = [shard.chunk(2, dim=0) for shard in shards]
        return [torch.cat([h[0] for h in halves]), torch.cat([h[1] for h in halves])]
    head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads
    groups = getattr(hf_config, "num_key_value_heads", None) or hf_config.num_attention_heads
    q_rows = hf_config.num_attention_heads // groups * head_dim
    full = torch.cat(shards, dim=0)
    tail = full.shape[1:]
    q, k, v = full.reshape(groups, q_rows + 2 * head_dim, *tail).split([q_rows, head_dim, head_dim], dim=1)
    return [q.reshape(-1, *tail), k.reshape(-1, *tail), v.reshape(-1, *tail)]


def _export_dtype(hf_config, fallback: torch.dtype) -> torch.dtype:
    dtype = getattr(hf_config, "dtype", None) or getattr(hf_config, "torch_dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    return dtype if isinstance(dtype, torch.dtype) else fallback


def _hf_tensors(model, hf_config):
    """(HF name, full tensor on TP rank 0 / None elsewhere) for this stage, one parameter at a time.
    Every TP rank of the stage must iterate it (the gathers are collective over TP)."""
    tp = parallel_state.get_tensor_model_parallel_world_size()
    tied = bool(getattr(hf_config, "tie_word_embeddings", False))
    for name, param in model.named_parameters():
        if tied and name == "output_layer.weight":
            continue  # the last stage's copy of the embedding (PP > 1)
        kind, names = hf_source(model, name, tied)
        full = _gather_tp(param.detach(), kind, hf_config, tp)
        for index, hf_name in enumerate(names):
            yield hf_name, None if full is None else full[index]


@torch.no_grad()
def gather_hf_state_dict(model, hf_config) -> dict[str, torch.Tensor] | None:
    """The whole model as HF tensors (CPU) on global rank 0, None elsewhere. Every rank must call it.

    For tests and small models: it holds the full model on rank 0 and pickles stages over PP.
    ``export_hf`` streams instead.
    """
    stage = {name: tensor.cpu() for name, tensor in _hf_tensors(model, hf_config) if tensor is not None}
    if parallel_state.get_tensor_model_parallel_rank() != 0 or parallel_state.get_data_parallel_rank() != 0:
        return None
    pp_group = parallel_state.get_pipeline_model_parallel_group()
    first = parallel_state.get_pipeline_model_parallel_first_rank()
    stages = [None] * parallel_state.get_pipeline_model_parallel_world_size() if dist.get_rank() == first else None
    dist.gather_object(stage, stages, dst=first, group=pp_group)
    if dist.get_rank() != first:
        return None
    return {name: tensor for part in stages for name, tensor in part.items()}


def has_tokenizer_files(folder) -> bool:
    """Whether ``folder`` holds a tokenizer (not only the generation config that weights-only folders carry)."""
    return any((Path(folder) / name).is_file() for name in TOKENIZER_FILES if name != "generation_config.json")


def copy_tokenizer_files(src_dir, out_dir) -> list[str]:
    """Copy the tokenizer (and generation config) files found in ``src_dir``; returns their names."""
    copied = []
    for filename in TOKENIZER_FILES:
        if (Path(src_dir) / filename).is_file():
            shutil.copyfile(Path(src_dir) / filename, Path(out_dir) / filename)
            copied.append(filename)
    return copied


SHARD_BYTES = 4 * 2**30  # at most this many bytes of tensors per safetensors file
INDEX_FILE = "model.safetensors.index.json"


class _ShardWriter:
    """Writes one PP stage's HF tensors into ``model-pp{stage}-{k}.safetensors`` files of <= max_bytes each."""

    def __init__(self, out: Path, stage: int, dtype: torch.dtype | None, max_bytes: int):
        self.out, self.stage, self.dtype, self.max_bytes = out, stage, dtype, max_bytes
        self.pending: dict[str, torch.Tensor] = {}
        self.pending_bytes, self.files = 0, 0
        self.weight_map: dict[str, str] = {}
        self.total_bytes = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        tensor = tensor.to(self.dtype or tensor.dtype).contiguous().cpu()
        size = tensor.numel() * tensor.element_size()
        if self.pending and self.pending_bytes + size > self.max_bytes:
            self.flush()
        self.pending[name] = tensor
        self.pending_bytes += size
        self.total_bytes += size

    def flush(self) -> None:
        if not self.pending:
            return
        filename = f"model-pp{self.stage:03d}-{self.files:05d}.safetensors"
        save_file(dict(sorted(self.pending.items())), str(self.out / filename), metadata={"format": "pt"})
        self.weight_map.update({name: filename for name in self.pending})
        self.pending, self.pending_bytes, self.files = {}, 0, self.files + 1


def _remove_old_weights(out: Path) -> None:
    """A stale model.safetensors would shadow the new index in transformers' loader."""
    for stale in [out / "model.safetensors", out / INDEX_FILE, *out.glob("model-*.safetensors")]:
        stale.unlink(missing_ok=True)


@torch.no_grad()
def export_hf(model, hf_config, out_dir, tokenizer_dir=None, max_shard_bytes: int = SHARD_BYTES) -> None:
    """Write an HF folder (config.json, sharded safetensors + model.safetensors.index.json, tokenizer files).

    Only data-parallel replica 0 takes part: per parameter its TP ranks gather to TP rank 0 (no rank holds
    the whole model; the writer holds at most one shard file of tensors), and TP rank 0 of each PP stage
    writes that stage's files. With PP > 1 the writers send rank 0 only their file lists (a few KB) for the
    index; with PP = 1 nothing is sent. Every rank returns after the folder is complete (long-wait barrier:
    writing an 8B model can take longer than NCCL's timeout).
    """
    from mos_nemo.engine.parallel import long_wait_barrier

    out = Path(out_dir)
    if dist.get_rank() == 0:
        out.mkdir(parents=True, exist_ok=True)
        _remove_old_weights(out)
    long_wait_barrier()
    writer = None
    if parallel_state.get_data_parallel_rank() == 0:
        stage = parallel_state.get_pipeline_model_parallel_rank()
        if parallel_state.get_tensor_model_parallel_rank() == 0:
            writer = _ShardWriter(out, stage, _export_dtype(hf_config, None), max_shard_bytes)
        for name, tensor in _hf_tensors(model, hf_config):
            if writer is not None:
                writer.add(name, tensor)
        if writer is not None:
            writer.flush()
            parts = [(writer.weight_map, writer.total_bytes)]
            if parallel_state.get_pipeline_model_parallel_world_size() > 1:
                first = parallel_state.get_pipeline_model_parallel_first_rank()
                gathered = [None] * parallel_state.get_pipeline_model_parallel_world_size()
                dist.gather_object(parts[0], gathered if dist.get_rank() == first else None, dst=first,
                                   group=parallel_state.get_pipeline_model_parallel_group())
                parts = gathered
            if dist.get_rank() == 0:
                weight_map = {name: file for part, _ in parts for name, file in part.items()}
                index = {"metadata": {"total_size": sum(size for _, size in parts)},
                         "weight_map": dict(sorted(weight_map.items()))}
                (out / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
                hf_config.save_pretrained(out)
                if tokenizer_dir is not None:
                    copy_tokenizer_files(tokenizer_dir, out)
    long_wait_barrier()
