"""tests/gpu: the CUDA tier (bf16, NCCL, TE spec when it imports). Collected everywhere; without CUDA every
test here is reported as skipped ("needs CUDA"), the one place in the suite where a skip is the intent."""

from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    no_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (tests/gpu)")
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.gpu)
            item.add_marker(no_cuda)


@pytest.fixture(scope="module")
def single_process_group():
    """A one-process NCCL world on a free port (initialize_parallel without torchrun)."""
    from mos_nemo.engine.parallel import destroy_parallel, initialize_parallel

    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 comparisons mean fp32, not TF32
    torch.backends.cudnn.allow_tf32 = False
    state = initialize_parallel(tp=1, pp=1, seed=0)
    yield state
    destroy_parallel()
