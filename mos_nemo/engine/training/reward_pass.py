"""The reward forward pass: per-example response NLL and pooled final hidden states, under any TP/PP/DP.

Every S steps MoS scores L examples of every dataset with the current model (docs/algorithm.md). This
module runs those examples through megatron-core's forward-only schedule and returns, on EVERY rank, the
same two tables:

- ``nll`` [N, L]: mean NLL over the example's response tokens (vocab-parallel cross entropy, inside
  GPTModel when labels are given), the input of the Diff reward (Eq. 9-10); with ``nll_tokens="sequence"``
  over every next-token prediction of the whole templated example instead (the authors' code);
- ``embeddings`` [N, L, H]: mean over the example's non-pad tokens of the final hidden states after the
  final norm, e_j of Eq. 7 (gathered along the sequence first if sequence parallel is on).

Layout independence: the rows are shared out over DP ranks; each rank writes its
examples' results into zero tables, and one all-reduce over the world sums them. Only the last PP stage with
TP rank 0 writes, and every other contribution is an exact zero, so the tables are the same on every rank
and do not depend on how many ranks computed them (up to the model's own TP numerics).

Rows (``mos_nemo.data.reward_rows``): by default the examples are packed into rows of one run-wide width
(``reward_width``: the longest example of the datasets rounded up to 128, at most seq_length), each example
its own segment with position ids from 0 and attention causal within the segment (the training path for
packed rows, ``model_inputs``), so an example's numbers are those of the example alone up to float rounding
(tests/unit/engine/test_packed_reward_pass.py: 1e-5 in fp32) while a row holds many examples. ``pack=False`` puts
one example per row at that width (causal attention without a mask; right padding is invisible to real
tokens). Shapes never change during the run. Per-example sums are taken per (row, segment) in one
scatter-add (``segment_means``); the loss and pooling masks move to the device with the batch. CosSim
needs only e_j: its pass skips the output layer and the cross entropy (GPTModel returns the final hidden
states when ``post_process`` is off), and ``nll`` is zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mos_nemo.data.reward_rows import Member, reward_micro_batches
from mos_nemo.engine.cpu import device_mode
from mos_nemo.engine.model.inputs import model_inputs, schedule_shape, to_device
from mos_nemo.engine.model.layer_spec import transformer_engine_available
from mos_nemo.engine.parallel import ParallelState
from mos_nemo.engine.training.step import unwrap

WIDTH_MULTIPLE = 128  # reward rows are padded to a multiple of this (tensor-core friendly, few distinct shapes)


def reward_width(datasets: Sequence, seq_length: int) -> int:
    """The run-wide width of reward rows: the longest example of ``datasets`` rounded up to WIDTH_MULTIPLE,
    capped at ``seq_length`` (examples are already truncated to it). Every reward example, pool included,
    comes from these datasets, so no row is ever cut."""
    longest = max((int(d.lengths.max()) for d in datasets if len(d)), default=1)
    return min(-(-longest // WIDTH_MULTIPLE) * WIDTH_MULTIPLE, seq_length)


@dataclass
class RewardRows:
    """The examples to score: ``examples[i][j]`` is the j-th example (a dataset item) of dataset i."""

    examples: list[list[dict]]

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.examples), max(len(rows) for rows in self.examples)


@dataclass
class ScoredExamples:
    nll: torch.Tensor  # [N, L] float64, per-example mean response-token NLL
    embeddings: torch.Tensor | None  # [N, L, H] float64, per-example mean-pooled final hidden states
    present: torch.Tensor  # [N, L] bool, False where dataset i has fewer than L examples


def score_examples(
    model: torch.nn.Module,
    rows: RewardRows,
    *,
    parallel: ParallelState,
    micro_batch_size: int,
    seq_length: int,
    pad_id: int,
    hidden_size: int,
    with_embeddings: bool,
    nll_tokens: str = "response",
    pack: bool = True,
) -> ScoredExamples:
    """Run ``rows`` through the forward-only schedule in eval mode; return the all-reduced tables.

    ``nll_tokens``: "response" (Eq. 9) or "sequence" (all tokens of the example, ``mixing.diff_tokens``).
    ``pack``: examples packed into rows of ``seq_length`` (segment-aware attention) or one per row.
    """
    if nll_tokens not in ("response", "sequence"):
        raise ValueError(f"nll_tokens = {nll_tokens!r}: choose response or sequence")
    from megatron.core.pipeline_parallel import get_forward_backward_func
    from megatron.core.tensor_parallel import gather_from_sequence_parallel_region

    n, l = rows.shape
    device = parallel.device
    nll = torch.zeros(n, l, dtype=torch.float64, device=device)
    embeddings = torch.zeros(n, l, hidden_size if with_embeddings else 0, dtype=torch.float64, device=device)
    present = torch.zeros(n, l, dtype=torch.bool)
    for i, examples in enumerate(rows.examples):
        present[i, : len(examples)] = True
    batches = reward_micro_batches(rows.examples, width=seq_length, micro_batch_size=micro_batch_size, pad_id=pad_id,
                                   dp=parallel.dp, dp_rank=parallel.dp_rank, pack=pack)
    use_te = transformer_engine_available()
    schedule_seq_length, schedule_micro_batch = schedule_shape(batches[0], use_te)
    gpt = unwrap(model)
    captured: list[torch.Tensor] = []
    writes = parallel.is_last_stage and parallel.tp_rank == 0

    def keep_hidden(_module, _inputs, output):
        hidden = output[0] if isinstance(output, tuple) else output  # [s(/tp), b, h]
        if gpt.config.sequence_parallel:
            hidden = gather_from_sequence_parallel_region(hidden)  # [s, b, h]
        captured.append(hidden)

    def forward_step(data_iterator, _model):
        members, batch = next(data_iterator)
        if nll_tokens == "sequence" and not with_embeddings:
            batch["labels"], batch["loss_mask"] = _sequence_targets(batch)
        # CosSim: no labels, and post_process is off below, so the last stage returns hidden states.
        output = _model(**model_inputs(batch, use_te, with_labels=not with_embeddings))
        return output, lambda result, non_loss_data=True: _record(members, batch, result)

    def _record(members, batch, result):  # result: per-token loss (Diff) or hidden states (CosSim)
        if not members:  # a micro batch of empty rows (a rank with fewer rows than the others)
            if with_embeddings:
                captured.pop(0)
            return None
        places = tuple(torch.tensor([m[axis] for m in members]) for axis in (2, 3))  # (dataset, slot)
        b, s = batch["segment_ids"].shape
        if with_embeddings:
            hidden = captured.pop(0).transpose(0, 1).reshape(b, s, -1).double()  # [b, s, h] (THD: [1, b*s, h])
            tokens = batch["segment_ids"] != 0  # [b, s], on the device
            example_embedding = segment_means(hidden, tokens.to(torch.float64), batch["segment_ids"], members)
            if writes:
                embeddings[places] = example_embedding  # [k, h]
        else:
            loss = result.double().reshape(b, s).unsqueeze(-1)  # [b, s, 1]
            example_nll = segment_means(loss, batch["loss_mask"].to(torch.float64), batch["segment_ids"], members)
            if writes:
                nll[places] = example_nll[:, 0]  # [k]
        return None

    handle = gpt.decoder.register_forward_hook(keep_hidden) if (with_embeddings and parallel.is_last_stage) else None
    post_process = gpt.post_process
    if with_embeddings:
        gpt.post_process = False  # GPTModel._postprocess returns the hidden states: no logits, no CE
    was_training = model.training
    toggles_pre_hook = getattr(getattr(model, "ddp_config", None), "overlap_param_gather", False)
    model.eval()
    if toggles_pre_hook:  # megatron-core: no param-gather pre-hook during forward-only passes
        model.disable_forward_pre_hook()
    try:
        with torch.no_grad(), device_mode():
            get_forward_backward_func()(
                forward_step_func=forward_step,
                data_iterator=iter([(b.pop("members"), to_device(b, device)) for b in batches]),
                model=[model],
                num_microbatches=len(batches),
                seq_length=schedule_seq_length,
                micro_batch_size=schedule_micro_batch,
                forward_only=True,
                collect_non_loss_data=True,
            )
    finally:
        gpt.post_process = post_process
        if handle is not None:
            handle.remove()
        if toggles_pre_hook:
            model.enable_forward_pre_hook()
        model.train(was_training)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(nll)
        if with_embeddings:
            dist.all_reduce(embeddings)
    return ScoredExamples(
        nll=nll.cpu(), embeddings=embeddings.cpu() if with_embeddings else None, present=present
    )


def _sequence_targets(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and mask [b, s] for the NLL over a whole example: every token predicts the next one of its own
    example (as HF ``labels=input_ids`` does for one unpadded example), not only the response tokens."""
    segments = batch["segment_ids"]  # [b, s], 0 = padding
    has_next = torch.zeros_like(segments, dtype=torch.bool)
    has_next[:, :-1] = (segments[:, :-1] != 0) & (segments[:, 1:] == segments[:, :-1])
    labels = torch.full_like(batch["tokens"], -100)
    labels[:, :-1] = torch.where(has_next[:, :-1], batch["tokens"][:, 1:], labels[:, :-1])
    return labels, has_next.to(torch.float32)


def segment_means(values: torch.Tensor, weights: torch.Tensor, segment_ids: torch.Tensor,
                  members: Sequence[Member]) -> torch.Tensor:
    """[k, c]: for each member (row r, segment g), sum_t weights[r, t] * values[r, t] / sum_t weights[r, t]
    over the tokens t of segment g of row r (a weight sum of 0 counts as 1: no response token gives 0).

    values [b, s, c], weights [b, s], segment_ids [b, s]; one scatter-add for the whole micro batch.
    """
    b, s, c = values.shape
    key = (torch.arange(b, device=segment_ids.device)[:, None] * (s + 1) + segment_ids).flatten()  # [b*s]
    sums = torch.zeros(b * (s + 1), c, dtype=values.dtype, device=values.device)
    sums.index_add_(0, key, (values * weights.unsqueeze(-1)).reshape(b * s, c))
    counts = torch.zeros(b * (s + 1), dtype=weights.dtype, device=weights.device).index_add_(0, key, weights.flatten())
    wanted = torch.tensor([m.row * (s + 1) + m.segment for m in members], device=values.device)  # [k]
    return sums[wanted] / counts[wanted].clamp(min=1).unsqueeze(-1)


def pooled_dataset_embeddings(scored: ScoredExamples) -> torch.Tensor:
    """Eq. 7: z_i = mean over dataset i's examples of e_j. Returns [N, H] float64."""
    weights = scored.present.to(torch.float64).unsqueeze(-1)  # [N, L, 1]
    return (scored.embeddings * weights).sum(1) / weights.sum(1)


def gather_examples(datasets: Sequence, example_ids: Sequence[torch.Tensor]) -> RewardRows:
    """The dataset items behind ``example_ids[i]`` (a LongTensor per dataset)."""
    return RewardRows([[dataset[int(k)] for k in ids] for dataset, ids in zip(datasets, example_ids)])
