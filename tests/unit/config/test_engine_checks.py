"""Checks that depend on the machine the run will use (GPU, Transformer Engine), decided by ``Engine``, so
they are tested here on CPU with the GPU cluster's answer passed in."""

import pytest

from mos_nemo.config import compose_config
from mos_nemo.config_checks import Engine, validate
from mos_nemo.errors import MosConfigError

TE_GPU, LOCAL_GPU, CPU = Engine(on_gpu=True, use_te=True), Engine(on_gpu=True, use_te=False), Engine(False, False)


def _validate(overrides, engine, world_size=1):
    validate(compose_config("tiny_cpu", overrides), world_size=world_size, engine=engine)


@pytest.mark.parametrize("dtype", ["fp32", "auto"])
def test_te_refuses_packed_rows_in_fp32_naming_the_keys_and_the_fix(dtype):
    engine = TE_GPU if dtype == "fp32" else Engine(on_gpu=False, use_te=True)  # auto is fp32 without a GPU
    with pytest.raises(MosConfigError) as caught:
        _validate([f"model.dtype={dtype}", "train.pack=true"], engine)
    message = str(caught.value)
    assert message.startswith(f"model.dtype='{dtype}'")
    assert "train.pack=true" in message and "model.dtype=bf16" in message and "train.pack=false" in message


@pytest.mark.parametrize("overrides, engine", [
    (["model.dtype=bf16", "train.pack=true"], TE_GPU),  # TE's flash / fused kernels take THD in bf16
    (["model.dtype=auto", "train.pack=true"], TE_GPU),  # auto is bf16 on GPU
    (["model.dtype=fp32", "train.pack=false"], TE_GPU),  # no THD: TE's unfused kernel runs fp32
    (["model.dtype=fp32", "train.pack=true"], LOCAL_GPU),  # the local spec's per-document SDPA runs fp32
    (["model.dtype=fp32", "train.pack=true"], CPU),
], ids=["te-bf16", "te-auto", "te-unpacked", "local-gpu", "cpu"])
def test_the_combinations_that_have_a_kernel_pass(overrides, engine):
    _validate(overrides, engine)


def test_sequence_parallel_needs_seq_length_a_multiple_of_tp_on_gpu():
    bad = ["parallel.tp=4", "train.seq_length=130", "train.global_batch_size=8"]
    with pytest.raises(MosConfigError) as caught:
        _validate(bad, LOCAL_GPU, world_size=4)
    message = str(caught.value)
    assert message.startswith("train.seq_length=130") and "parallel.tp=4" in message
    assert "128 or 132" in message and "parallel.sequence_parallel=false" in message
    _validate(bad + ["parallel.sequence_parallel=false"], LOCAL_GPU, world_size=4)  # no split: any length
    _validate(bad, CPU, world_size=4)  # sequence parallelism is off on CPU (build.py)
    _validate(["parallel.tp=4", "train.seq_length=128", "train.global_batch_size=8"], LOCAL_GPU, world_size=4)
