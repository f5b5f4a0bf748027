"""megatron-core engine: model from HF configs, CPU shims, parallel set-up, HF conversion, training step.

megatron-core warns at import time about missing Transformer Engine / Apex and calls a few deprecated torch
functions; those warnings say nothing actionable to our users, so they are silenced here, before any
engine module imports megatron. This is the one place warning filters live (pytest's copy for the test
run is in pyproject.toml); what is not filtered reaches the run's log via ``mos_nemo.logs.configure_logging``.
The same goes for the few log records of torch and megatron-core that say nothing to act on (one of them is
logged while megatron is imported): ``mos_nemo.known_notices`` names them, and its filters are set here.
"""

import warnings

from mos_nemo.known_notices import drop_known_notices

drop_known_notices()

warnings.filterwarnings("ignore", module=r"megatron(\..*)?$")
warnings.filterwarnings("ignore", message=r".*Transformer Engine and Apex are not installed.*")
warnings.filterwarnings("ignore", message=r".*all_gather_into_tensor. is deprecated.*")
warnings.filterwarnings("ignore", message=r".*reduce_scatter_tensor. is deprecated.*")
warnings.filterwarnings("ignore", message=r".*deprecating ShardedTensor.*")
# megatron-core 0.19 loads checkpoints through torch.distributed.checkpoint.load with the storage reader as
# second positional argument and no_dist=True; torch 2.9 warns about both on every load (a resume, an export).
warnings.filterwarnings("ignore", message=r"torch\.distributed is disabled, unavailable or uninitialized, "
                                          r"assuming the intent is to load in a single process")
warnings.filterwarnings("ignore", message=r"The argument order of load has been changed")
# Except megatron's warning that CUDA_DEVICE_MAX_CONNECTIONS is not 1 (it then cannot overlap communication
# with compute): that one is actionable, so it stays visible (a later filter takes precedence).
warnings.filterwarnings("default", message=r".*CUDA_DEVICE_MAX_CONNECTIONS.*")
