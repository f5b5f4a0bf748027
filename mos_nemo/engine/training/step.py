"""One optimizer step on megatron-core: DDP wrapping, the forward step, the schedule, the optimizer.

Loss (paper Eq. 1, SPEC "Training defaults"): the sum of per-token losses over response tokens, divided by
the number of response tokens in the whole global batch (all micro batches, all data-parallel ranks).
megatron does the division for us with ``calculate_per_token_loss``: the forward step returns the masked
sum and its token count, the backward runs on the sum, and ``finalize_model_grads`` all-reduces the token
count over DP and scales the gradients by 1 / count. The logged loss is that same token average.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterator, Optional

import torch
import torch.distributed as dist

from mos_nemo.engine.cpu import device_mode
from mos_nemo.engine.model.inputs import model_inputs, schedule_shape
from mos_nemo.engine.model.layer_spec import transformer_engine_available
from mos_nemo.engine.parallel import ParallelState
from mos_nemo.engine.training.interrupt import MicroBatchFeed, StepInterrupted

from megatron.core.distributed import (
    DistributedDataParallel,
    DistributedDataParallelConfig,
    finalize_model_grads,
)
from megatron.core.pipeline_parallel import get_forward_backward_func


@dataclass(frozen=True)
class StepResult:
    loss: float  # token-averaged loss over the global batch (the optimised quantity)
    loss_tokens: int  # response tokens in the global batch
    tokens: int  # all non-padding tokens in the global batch
    grad_norm: float  # global gradient norm before clipping
    update_ok: bool  # False if the step was skipped (non-finite gradients): the weights are unchanged
    dataset_losses: list  # per dataset: token-averaged loss of its examples in this batch, None if absent
    stop_requested: bool = False  # some rank had been signalled by the end of this step (agreed on every rank)


def ddp_config(use_distributed_optimizer: bool, on_gpu: bool) -> DistributedDataParallelConfig:
    """megatron DDP settings. On GPU with the distributed optimizer, the gradient reduce-scatter overlaps the
    backward pass and the parameter all-gather overlaps the next forward (megatron-LM's defaults for it);
    on CPU (gloo) there is nothing to overlap with, so both stay off."""
    overlap = on_gpu and use_distributed_optimizer
    return DistributedDataParallelConfig(
        grad_reduce_in_fp32=True,
        overlap_grad_reduce=overlap,
        overlap_param_gather=overlap,
        use_distributed_optimizer=use_distributed_optimizer,
        average_in_collective=False,
    )


def distributed_optimizer_layout(model: torch.nn.Module, ddp: DistributedDataParallelConfig) -> dict:
    """DDP's keyword for the distributed optimizer's buffer layout, computed before DDP as megatron-LM does.

    From megatron-core 0.17, DDP given the distributed optimizer but no ``full_param_layout`` warns that
    computing it itself is deprecated. The layout here is the one DDP would compute: buckets of
    ``max(40M, 1M * dp)`` elements with an overlapped reduce, one bucket without (or on a later pipeline
    stage), over the data-parallel (with context-parallel) group. Empty on 0.16, whose DDP takes no layout.
    """
    if not ddp.use_distributed_optimizer or "full_param_layout" not in inspect.signature(
            DistributedDataParallel.__init__).parameters:
        return {}
    from megatron.core import parallel_state
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    dp_size = parallel_state.get_data_parallel_group(with_context_parallel=True, partial_data_parallel=True).size()
    bucket_size = None
    if ddp.overlap_grad_reduce and parallel_state.get_pipeline_model_parallel_rank() == 0:
        bucket_size = ddp.bucket_size or max(40_000_000, 1_000_000 * dp_size)
    params = [param for param in model.parameters() if param.requires_grad]
    return {"full_param_layout": DistributedOptimizer.compute_full_param_layout(params, bucket_size, dp_size, ddp)}


def wrap_for_training(model: torch.nn.Module, use_distributed_optimizer: bool) -> list[DistributedDataParallel]:
    """megatron DDP around the model, with the per-token loss normalisation wired into its config."""
    config = model.config
    config.calculate_per_token_loss = True  # before DDP: it decides how DDP scales reduced gradients
    settings = ddp_config(use_distributed_optimizer, torch.cuda.is_available())
    ddp = DistributedDataParallel(
        config=config,
        ddp_config=settings,
        module=model,
        **distributed_optimizer_layout(model, settings),
    )
    config.finalize_model_grads_func = finalize_model_grads
    config.no_sync_func = ddp.no_sync
    return [ddp]


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The GPTModel inside megatron's DDP / Float16Module wrappers (checkpoint keys and the reward pass must
    not depend on the wrapping)."""
    while hasattr(model, "module"):
        model = model.module
    return model


def synchronize_params(model: list[DistributedDataParallel]) -> None:
    """Finish the overlapped parameter all-gather of the last optimizer step, before anything reads the
    parameters outside a training forward (checkpoint save, HF export). No-op without overlap_param_gather."""
    for chunk in model:
        if getattr(chunk.ddp_config, "overlap_param_gather", False):
            chunk.start_param_sync(force_sync=True)


def _masked_token_loss(loss_mask: torch.Tensor, dataset_ids: torch.Tensor, num_datasets: int,
                       per_token_loss: torch.Tensor):
    """The loss function megatron calls on the last stage: (masked sum, token count, values to report).

    The report also holds per-dataset [loss sum, tokens] rows [N, 2], for the per-dataset loss in the logs.
    """
    mask = loss_mask.float()  # [b, s]
    token_losses = per_token_loss.float().reshape(mask.shape) * mask  # [b, s] (THD packing gives [1, b*s])
    loss_sum, count = token_losses.sum(), mask.sum()
    per_dataset = torch.zeros(num_datasets, 2, dtype=torch.float32, device=mask.device)  # [N, 2]
    index = dataset_ids.clamp(min=0).flatten()  # [b*s]; padding (-1) carries no mask weight
    per_dataset[:, 0].index_add_(0, index, token_losses.detach().flatten())
    per_dataset[:, 1].index_add_(0, index, mask.flatten())
    report = {"loss_sum_and_tokens": torch.stack([loss_sum.detach(), count]), "per_dataset": per_dataset}
    return loss_sum, count.to(torch.int), report


def make_forward_step(num_datasets: int, use_te: bool | None = None):
    """megatron's forward-step contract (data_iterator, model) -> (output, loss function)."""
    use_te = transformer_engine_available() if use_te is None else use_te

    def forward_step(data_iterator: Iterator[dict], model: torch.nn.Module):
        batch = next(data_iterator)
        # causal without a mask, or packed rows (inputs.py); last stage: per-token loss, else hidden states
        output = model(**model_inputs(batch, use_te))
        return output, partial(_masked_token_loss, batch["loss_mask"], batch["dataset_ids"], num_datasets)

    return forward_step


def train_step(model: list[DistributedDataParallel], optimizer, micro_batches: list[dict],
               parallel: ParallelState, num_datasets: int,
               stop_requested: Optional[Callable[[], bool]] = None) -> StepResult:
    """Forward and backward over this rank's micro batches (gradient accumulation), then one optimizer step.

    ``stop_requested`` (this rank's signal flag) is agreed over all ranks between micro batches when
    pp == 1 (see ``interrupt.py``): if any rank was signalled, every rank drops the step's gradients and
    raises ``StepInterrupted`` before the optimizer step. Otherwise it is read after the optimizer step
    and agreed in the step's one all-reduce, at no collective or host sync of its own.
    """
    for chunk in model:
        chunk.zero_grad_buffer()
    optimizer.zero_grad()
    use_te = transformer_engine_available()
    seq_length, micro_batch_size = schedule_shape(micro_batches[0], use_te)
    feed = MicroBatchFeed(micro_batches, stop_requested if parallel.pp == 1 else None, parallel.world_size)
    try:
        with device_mode():
            reports = get_forward_backward_func()(
                forward_step_func=make_forward_step(num_datasets, use_te),
                data_iterator=feed,
                model=model,
                num_microbatches=len(micro_batches),
                seq_length=seq_length,
                micro_batch_size=micro_batch_size,
                forward_only=False,
            )
    except StepInterrupted:
        # Left before the last micro batch: DDP's no_sync context has been exited, no gradient reduce has
        # started and the optimizer has not run; only the accumulated partial gradients remain.
        for chunk in model:
            chunk.zero_grad_buffer()
        optimizer.zero_grad()
        raise
    if gradients_finite(model, parallel):
        with device_mode():
            update_ok, grad_norm, _ = optimizer.step()
    else:  # megatron's own skip (it has one only with an fp16 grad scaler): the weights stay as they were
        update_ok, grad_norm = False, None
    signalled = stop_requested is not None and stop_requested()
    sums = _global_sums(reports, micro_batches, parallel, num_datasets, signalled)  # [N + 2, 3]
    loss_sum, loss_tokens, tokens = sums[0].tolist()
    return StepResult(
        loss=loss_sum / max(loss_tokens, 1.0),
        loss_tokens=int(loss_tokens),
        tokens=int(tokens),
        grad_norm=float(grad_norm) if grad_norm is not None else float("nan"),
        update_ok=bool(update_ok),
        dataset_losses=[float(s / n) if n > 0 else None for s, n, _ in sums[1:-1].tolist()],
        stop_requested=bool(sums[-1, 0] > 0),
    )


def gradients_finite(model: list[DistributedDataParallel], parallel: ParallelState) -> bool:
    """True on every rank if no rank's gradient buffers hold a NaN or an infinity.

    megatron checks this only with a grad scaler (fp16): under bf16 and fp32 it applies a non-finite update
    and reports it applied. A float64 sum per buffer propagates any NaN/inf without a full-size mask."""
    total = torch.zeros(1, dtype=torch.float64, device=parallel.device)
    for chunk in model:
        for buffer in [*chunk.buffers, *chunk.expert_parallel_buffers]:
            total += buffer.grad_data.sum(dtype=torch.float64)
    bad = torch.logical_not(torch.isfinite(total)).to(torch.float64)
    if parallel.world_size > 1:
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    return bool(bad.item() == 0)


def _global_sums(reports: list[dict], micro_batches: list[dict], parallel: ParallelState,
                 num_datasets: int, signalled: bool = False) -> torch.Tensor:
    """[N + 2, 3] float64 over the global batch, known on every rank: row 0 = (loss sum, response tokens,
    all tokens); row 1 + i = (loss sum, response tokens, 0) of dataset i; the last row = (ranks signalled,
    0, 0), which every rank adds to.

    Only the last stage holds losses, and its TP ranks hold identical copies: one rank per DP replica
    (last stage, TP rank 0) contributes to a world all-reduce.
    """
    sums = torch.zeros(num_datasets + 2, 3, dtype=torch.float64, device=parallel.device)
    sums[-1, 0] = float(signalled)
    if parallel.is_last_stage and parallel.tp_rank == 0:  # accumulated on the device: no sync per micro batch
        for report in reports:
            sums[0, :2] += report["loss_sum_and_tokens"].double()
            sums[1:-1, :2] += report["per_dataset"].double()
        for batch in micro_batches:
            sums[0, 2] += (batch["segment_ids"] != 0).sum()
    if parallel.world_size > 1:
        dist.all_reduce(sums)
    return sums.cpu()  # the step's one host sync, for the log line
