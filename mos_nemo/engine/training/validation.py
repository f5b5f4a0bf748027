"""Held-out loss per dataset, scored during training (``validation.holdout``, ``validation.every``).

Every ``validation.every`` steps, at the start and after the last step, every held-out example is run
through the forward-only schedule (the reward pass's ``score_examples``, so any TP/PP/DP layout gives the
same numbers) and each dataset's loss is reported: the mean over its held-out examples of each example's
mean response-token NLL. Rows have one run-wide width, so a loss does not depend on which examples share a
micro batch. ``mean`` is the plain mean over datasets, as the paper averages skills. Each example's own
NLL is kept too (validation_examples.jsonl), in the held-out order, which ``validation.seed`` fixes: two runs
with the same held-out set can then be compared example by example (a paired test), not only by their means.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mos_nemo.engine.parallel import ParallelState
from mos_nemo.engine.training.reward_pass import RewardRows, reward_width, score_examples


class HeldOutLoss:
    """Scores the held-out datasets with the model; ``__call__`` returns ``({name: loss}, {name: [example
    NLL, ...]})`` on every rank."""

    def __init__(self, heldout: Sequence, parallel: ParallelState, micro_batch_size: int, seq_length: int,
                 pad_id: int, hidden_size: int, every: int):
        self.names = [d.name for d in heldout]
        self.rows = RewardRows([[dataset[k] for k in range(len(dataset))] for dataset in heldout])
        self.parallel, self.micro_batch_size, self.pad_id = parallel, micro_batch_size, pad_id
        self.width = reward_width(heldout, seq_length)
        self.hidden_size, self.every = hidden_size, every

    def due(self, step: int, last_step: int) -> bool:
        """At the start (step 0), every ``every`` steps, and after the last step of the run."""
        return step == 0 or step == last_step or (self.every > 0 and step % self.every == 0)

    def __call__(self, model: torch.nn.Module) -> tuple[dict[str, float], dict[str, list[float]]]:
        scored = score_examples(model, self.rows, parallel=self.parallel, micro_batch_size=self.micro_batch_size,
                                seq_length=self.width, pad_id=self.pad_id, hidden_size=self.hidden_size,
                                with_embeddings=False)
        present = scored.present.to(torch.float64)  # [N, K]
        losses = (scored.nll * present).sum(1) / present.sum(1)  # [N]
        examples = {name: scored.nll[i][scored.present[i]].tolist() for i, name in enumerate(self.names)}
        return dict(zip(self.names, losses.tolist())), examples
