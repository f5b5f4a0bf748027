"""Shims that let megatron-core (0.16 to 0.19) run on a machine without CUDA (docs/engine.md, "megatron-core on CPU").

Used only when ``torch.cuda.is_available()`` is False; on a GPU every function here is a no-op, so the
training code calls them unconditionally:

    install_cpu_shims()            # once, before building megatron objects
    with device_mode():            # around every schedule / optimizer / grad-clip call
        losses = forward_backward_func(...)

Why each shim exists (megatron-core hard-codes CUDA in these places):
- ``torch.cuda.current_device`` returns ``"cpu"``: RoPE and the global memory buffer allocate on it.
- ``torch.cuda.synchronize`` is a no-op: the pipeline schedules call it.
- ``torch.cuda.current_stream`` returns a stream whose waits are no-ops: from megatron-core 0.17 on,
  ``_ParamAndGradBucketGroup.start_grad_sync`` (every step's gradient reduce) asks for the current stream
  unconditionally, to wait on CUDA-graph events that never exist on CPU.
- ``Tensor.cuda()`` returns the tensor itself: tied embeddings with PP>1 and the distributed optimizer move
  tensors to CUDA before a collective.
- ``Tensor.type()`` (no-argument form) reports ``torch.cuda.FloatTensor`` for CPU tensors: grad clipping and
  the distributed optimizer compare against the CUDA type names.
- ``device_mode()`` rewrites ``device="cuda"`` arguments to CPU: the schedules, grad clipping and the optimizer
  create tensors directly on "cuda".
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

_installed = False
_CPU = torch.device("cpu")


def _is_cuda_device(value: Any) -> bool:
    """True for the spellings of a CUDA device that megatron passes: "cuda", "cuda:0", device, int."""
    if isinstance(value, torch.device):
        return value.type == "cuda"
    if isinstance(value, str):
        return value.startswith("cuda")
    return False


def _cpu_type_name(tensor: torch.Tensor, original_type, *args, **kwargs):
    """``Tensor.type`` that names CPU tensors as their CUDA counterparts when asked for the name only."""
    if args or kwargs:
        return original_type(tensor, *args, **kwargs)
    name = original_type(tensor)
    if tensor.device.type == "cpu" and not name.startswith("torch.cuda."):
        return name.replace("torch.", "torch.cuda.", 1)
    return name


class CpuStream:
    """Stands in for ``torch.cuda.current_stream()``: on CPU every kernel has run when the call returns, so
    there is nothing to wait for."""

    def wait_event(self, event) -> None:
        pass

    def wait_stream(self, stream) -> None:
        pass

    def synchronize(self) -> None:
        pass


_CPU_STREAM = CpuStream()


def install_cpu_shims() -> None:
    """Patch the few CUDA entry points megatron-core uses unconditionally. Idempotent; no-op on GPU."""
    global _installed
    if _installed or torch.cuda.is_available():
        return
    original_type = torch.Tensor.type

    def tensor_type(self, *args, **kwargs):
        return _cpu_type_name(self, original_type, *args, **kwargs)

    def tensor_cuda(self, *args, **kwargs):
        return self

    torch.cuda.current_device = lambda: "cpu"
    torch.cuda.synchronize = lambda *args, **kwargs: None
    torch.cuda.current_stream = lambda *args, **kwargs: _CPU_STREAM
    torch.Tensor.cuda = tensor_cuda
    torch.Tensor.type = tensor_type
    _installed = True


class CudaToCpuMode(TorchFunctionMode):
    """Rewrites every ``device=cuda`` (keyword or positional device argument of ``.to``) to CPU."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if _is_cuda_device(kwargs.get("device")):
            kwargs["device"] = _CPU
        if args and any(_is_cuda_device(a) for a in args[1:]):
            # Tensor.to("cuda") / Tensor.to(torch.device("cuda"), dtype): the device is positional.
            args = tuple(_CPU if i > 0 and _is_cuda_device(a) else a for i, a in enumerate(args))
        return func(*args, **kwargs)


def device_mode() -> contextlib.AbstractContextManager:
    """The cuda->cpu function mode on CPU, a null context on GPU. Wrap megatron schedule/optimizer calls."""
    if torch.cuda.is_available():
        return contextlib.nullcontext()
    install_cpu_shims()
    return CudaToCpuMode()
