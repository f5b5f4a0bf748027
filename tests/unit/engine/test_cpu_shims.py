"""The CPU shims do what megatron needs and leave ordinary torch behaviour alone."""

import pytest
import torch

from mos_nemo.engine.cpu import device_mode, install_cpu_shims

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the shims are a no-op on GPU")


def test_install_is_idempotent_and_patches_cuda_entry_points():
    install_cpu_shims()
    patched_type = torch.Tensor.type
    install_cpu_shims()
    assert torch.Tensor.type is patched_type  # not wrapped twice
    assert torch.cuda.current_device() == "cpu"
    assert torch.cuda.synchronize() is None
    x = torch.ones(3)
    assert x.cuda() is x


def test_tensor_type_reports_cuda_names_but_still_converts():
    install_cpu_shims()
    assert torch.ones(2).type() == "torch.cuda.FloatTensor"
    assert torch.ones(2, dtype=torch.bfloat16).type() == "torch.cuda.BFloat16Tensor"
    converted = torch.ones(2).type(torch.float64)
    assert converted.dtype == torch.float64 and converted.device.type == "cpu"


def test_device_mode_maps_cuda_devices_to_cpu():
    with device_mode():
        made = torch.zeros(2, device="cuda")
        moved = torch.ones(2).to("cuda:0")
        moved_kw = torch.ones(2).to(device=torch.device("cuda"), dtype=torch.float64)
    assert made.device.type == moved.device.type == moved_kw.device.type == "cpu"
    assert moved_kw.dtype == torch.float64
    with pytest.raises((RuntimeError, AssertionError)):
        torch.zeros(2, device="cuda")  # outside the mode, CUDA is still absent


def test_current_stream_is_a_stream_with_nothing_to_wait_for():
    install_cpu_shims()
    stream = torch.cuda.current_stream()
    assert stream is torch.cuda.current_stream()
    assert stream.wait_event(object()) is None and stream.wait_stream(stream) is None and stream.synchronize() is None
