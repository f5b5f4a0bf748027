"""What changed between megatron-core 0.16 and 0.19 (CI runs this file on both): building and wrapping our
model uses no API that megatron-core has deprecated, and a real gradient reduce runs on CPU.

megatron-core 0.16 and later warn that an MLP built without ``ffn_hidden_size`` will become an error; 0.17
and later also warn when DDP with the distributed optimizer has to compute its own ``full_param_layout`` and
when a layer spec's MLP is a ``ModuleSpec`` it must rewrap, and ask for ``torch.cuda.current_stream()`` in
every gradient reduce (``_ParamAndGradBucketGroup.start_grad_sync``), which our CPU shims must answer. The
Docker image pins the megatron-core that CI's second leg runs.
"""

import logging
import re
import sys
import tomllib
import warnings
from importlib.metadata import version
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement

from mos_nemo.engine.cpu import device_mode
from mos_nemo.engine.hf.tiny import tiny_hf_config
from mos_nemo.engine.model.gpt import build_model
from mos_nemo.engine.training.step import unwrap, wrap_for_training

ROOT = Path(__file__).resolve().parents[3]
DEPRECATED = ("ffn_hidden_size", "full_param_layout not provided", "Rewrapping ModuleSpec")


@pytest.mark.parametrize("distributed_optimizer", [True, False])
def test_building_and_wrapping_use_no_deprecated_megatron_api(parallel, caplog, distributed_optimizer):
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # pyproject silences megatron's DeprecationWarnings; see them here
        model = wrap_for_training(build_model(tiny_hf_config("llama"), params_dtype=torch.float32),
                                  distributed_optimizer)
    said = [str(w.message) for w in caught] + [record.getMessage() for record in caplog.records]
    assert not [message for message in said if any(text in message for text in DEPRECATED)], said
    config = unwrap(model[0]).config
    assert all(layer.mlp.linear_fc1.weight.shape[0] == 2 * config.ffn_hidden_size  # gated (SwiGLU) fc1
               for layer in unwrap(model[0]).decoder.layers)


def test_gradient_reduce_runs_on_cpu_with_the_distributed_optimizer(parallel):
    model = wrap_for_training(build_model(tiny_hf_config("llama"), params_dtype=torch.float32), True)[0]
    tokens = torch.randint(0, 100, (2, 16), generator=torch.Generator().manual_seed(5))
    logits = model(input_ids=tokens, position_ids=torch.arange(16).expand(2, 16), attention_mask=None)
    logits.float().square().mean().backward()
    with device_mode():
        model.start_grad_sync()  # megatron-core >= 0.17 asks for the current CUDA stream here
        model.finish_grad_sync()
    grads = [param.main_grad for param in model.module.parameters()]
    assert all(torch.isfinite(grad).all() for grad in grads) and any(grad.abs().sum() > 0 for grad in grads)


def test_the_docker_image_pins_a_megatron_core_that_ci_runs():
    """docker/Dockerfile's megatron-core is inside pyproject's range and, on Python 3.12 (CI's second leg,
    which installs the newest version that range admits), is the version installed here."""
    pinned = re.search(r'"megatron-core==([0-9.]+)"', (ROOT / "docker" / "Dockerfile").read_text())
    assert pinned, "docker/Dockerfile installs no pinned megatron-core"
    requirement = next(Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "dependencies"] if r.startswith("megatron-core"))
    assert requirement.specifier.contains(pinned.group(1)), (pinned.group(1), str(requirement))
    if sys.version_info >= (3, 12):
        installed = version("megatron-core")
        assert pinned.group(1) == installed, f"CI installed megatron-core {installed}: pin docker/Dockerfile to it"
