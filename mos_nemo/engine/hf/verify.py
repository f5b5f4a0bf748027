"""Compare our megatron model's logits with HF transformers' on a fixed input (``convert verify``).

The input is a fixed pseudo-random token batch (generator seeded with ``seed``); both models run in the
same dtype on the same device (``convert verify`` defaults to fp32 everywhere: in bf16 two correct
implementations differ by bf16 rounding, which hides or fakes a conversion bug). Besides the largest
absolute logit difference it reports top-1 agreement: the fraction of positions where both models'
argmax token is the same, the number that matters in bf16. The megatron forward goes through megatron's
forward-only pipeline schedule, so PP > 1 is exercised the way training runs it; logits are gathered over
TP on the last stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from mos_nemo.engine.cpu import device_mode

from megatron.core import parallel_state, tensor_parallel
from megatron.core.pipeline_parallel import get_forward_backward_func


def fixed_tokens(vocab_size: int, batch: int, seq_len: int, seed: int) -> torch.Tensor:
    """[batch, seq_len] token ids drawn from a generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (batch, seq_len), generator=generator)


@torch.no_grad()
def megatron_logits(model, tokens: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    """Full-vocabulary logits [b, s, V] on the last PP stage (None on other stages), causal, no mask."""
    batch, seq_len = tokens.shape
    tokens = tokens.to(device)
    position_ids = torch.arange(seq_len, device=device).expand(batch, seq_len)  # [b, s]

    def forward_step(data_iterator, step_model):
        batch_tokens = next(data_iterator)
        output = step_model(input_ids=batch_tokens, position_ids=position_ids, attention_mask=None)

        def collect(logits, non_loss_data=False):  # logits: [b, s, V/tp]
            return tensor_parallel.gather_from_tensor_model_parallel_region(logits)

        return output, collect

    model.eval()
    with device_mode():
        outputs = get_forward_backward_func()(
            forward_step_func=forward_step, data_iterator=iter([tokens]), model=[model],
            num_microbatches=1, seq_length=seq_len, micro_batch_size=batch,
            forward_only=True, collect_non_loss_data=True,
        )
    return outputs[0].float().cpu() if parallel_state.is_pipeline_last_stage() else None


@torch.no_grad()
def hf_logits(hf_dir, tokens: torch.Tensor, dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.Tensor:
    """Logits [b, s, V] (fp32, CPU) of the HF transformers model in ``hf_dir`` (eager attention, causal)."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=dtype, attn_implementation="eager")
    model = model.to(device).eval()
    return model(input_ids=tokens.to(device)).logits.float().cpu()


@dataclass(frozen=True)
class LogitComparison:
    max_abs_diff: float  # max |logits_ours - logits_HF| over every position and token
    top1_agreement: float  # fraction of positions whose argmax token is the same in both


def top1_agreement(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """Fraction of positions [b, s] where argmax over the vocabulary of ``ours`` and ``theirs`` agree."""
    return float((ours.argmax(-1) == theirs.argmax(-1)).double().mean())


def compare_with_hf(model, hf_dir, vocab_size: int, device: torch.device, *, batch: int = 2, seq_len: int = 32,
                    seed: int = 1234, dtype=torch.float32) -> LogitComparison:
    """Our logits vs HF's on the fixed batch (HF on the same device and dtype); the same on every rank."""
    tokens = fixed_tokens(vocab_size, batch, seq_len, seed)
    ours = megatron_logits(model, tokens, device)
    stats = torch.zeros(2, dtype=torch.float64)  # (max |diff|, 1 - top-1 agreement): MAX-reduced
    if ours is not None and parallel_state.get_tensor_model_parallel_rank() == 0:
        theirs = hf_logits(hf_dir, tokens, dtype, device)
        stats = torch.tensor([(ours - theirs).abs().max().item(), 1.0 - top1_agreement(ours, theirs)],
                             dtype=torch.float64)
    stats = stats.to(device)
    dist.all_reduce(stats, op=dist.ReduceOp.MAX)
    return LogitComparison(max_abs_diff=float(stats[0]), top1_agreement=1.0 - float(stats[1]))


def max_logit_difference(model, hf_dir, vocab_size: int, device: torch.device, **kwargs) -> float:
    """max |logits_ours - logits_HF| over the fixed batch, the same number on every rank."""
    return compare_with_hf(model, hf_dir, vocab_size, device, **kwargs).max_abs_diff
