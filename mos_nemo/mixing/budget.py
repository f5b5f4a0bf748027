"""``mixing.reward_budget``: a fixed number of scored examples per mixing update, whatever the number of datasets.

The paper scores L examples of every dataset at every update, N x L examples (Algorithm 1, line 7). With a
budget B (examples per update) the update scores K = floor(B / L) datasets, each with the paper's full L
examples, in rotation (docs/algorithm.md, "A reward budget for many datasets"):

- a fixed permutation of the datasets, keyed on (seed, "reward_rotation"), is walked K at a time, so each
  available dataset is scored once every ceil(N_available / K) updates;
- the first update (nothing known yet) scores every dataset once, a one-off N x L pass;
- every signal table a mixer reads (``MixerInputs``: pooled embeddings z, NLL, theta0's NLL, mask) keeps
  each dataset's latest scored row, so the mixer always sees all N datasets, K of them fresh, and
  ``MixerInputs.scored`` says which;
- MoS: CosSim's Eq. 8 is evaluated on the table of latest z_n (it needs every dataset's); a dataset that was
  not scored keeps its smoothed reward exactly (the controller's ``scored`` mask), for CosSim and Diff;
- DoReMi: the excess loss of a dataset not scored is its latest measured one, so each update still takes
  one exponentiated-gradient step over all datasets, K of the N excess losses fresh.

Each scored dataset still uses L examples, so every reward it enters has the distribution of the paper's
(no small-L bias in CosSim's cosine of means); what the budget costs is freshness: a dataset's
information is up to ceil(N / K) - 1 updates old, and there are K / N as many independent reward draws
per update.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from mos_nemo.data.rng import keyed_generator
from mos_nemo.errors import MosConfigError
from mos_nemo.mixing.mixer import MixerInputs

# mixing.reward_batch = null: the authors' code scores 8 x 8 examples for CosSim and 8 x 2 for Diff.
DEFAULT_REWARD_BATCH = {"cossim": 64, "diff": 16}
DEFAULT_NLL_BATCH = 16  # DoReMi's excess loss scores like Diff


def reward_batch_of(mixing) -> int:
    """L: ``mixing.reward_batch``, or the default of the run's mixer (``mixing`` is the config's section)."""
    if mixing.reward_batch:
        return int(mixing.reward_batch)
    return DEFAULT_REWARD_BATCH[str(mixing.reward)] if mixing.strategy == "mos" else DEFAULT_NLL_BATCH


def datasets_per_update(budget: int | None, reward_batch: int, num_datasets: int) -> int:
    """K: datasets scored per update (all of them when ``budget`` is None, the paper)."""
    if budget is None:
        return num_datasets
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < reward_batch:
        raise MosConfigError(f"mixing.reward_budget = {budget!r}: must be an integer >= mixing.reward_batch "
                             f"(L = {reward_batch}), since every scored dataset gets its L examples; lower "
                             f"mixing.reward_batch or raise the budget, or null for the paper (N x L)")
    return min(num_datasets, budget // reward_batch)


def reference_pool_per_dataset(reference_pool: int, reward_batch: int, num_datasets: int, per_update: int) -> int:
    """Examples per dataset in the theta0 pool (Diff and DoReMi with ``mixing.reference: pool``), scored once
    before step 1.

    Without a budget (K = N): ``reference_pool``, the paper-sized pool of every dataset, N x reference_pool
    examples in all. With a budget the pool is sized as if only K datasets existed: reference_pool x K / N
    per dataset (at least L, one reward mini-batch), so its one-off cost is about reference_pool x K examples
    whatever N: the cost of the paper's pool at N = K.
    """
    if per_update >= num_datasets:
        return reference_pool
    return max(reward_batch, math.ceil(reference_pool * per_update / num_datasets))


SIGNAL_TABLES = ("embeddings", "nll", "nll_ref", "mask")  # MixerInputs' per-dataset tables, carried row by row


class RewardRotation:
    """Which datasets each update scores, and the latest scored row of every dataset in each signal table."""

    def __init__(self, num_datasets: int, per_update: int, seed: int):
        self.num_datasets, self.per_update = num_datasets, per_update
        self.order = torch.randperm(num_datasets, generator=keyed_generator(seed, "reward_rotation"))  # [N]
        self.kept: dict[str, torch.Tensor] | None = None  # table name -> [N, ...], the latest scored rows

    @property
    def active(self) -> bool:
        return self.per_update < self.num_datasets

    def cycle_updates(self, available: torch.Tensor) -> int:
        """Updates between two scorings of one dataset: ceil(N_available / K)."""
        return math.ceil(int((available > 0).sum()) / self.per_update)

    def scored(self, update: int, available: torch.Tensor) -> torch.Tensor:
        """[N] bool: the datasets update number ``update`` (1, 2, ...) scores. All of them (excluded ones too,
        whose z_n CosSim's Eq. 8 still averages over) without a budget or while no table is kept yet (the
        run's first update); otherwise the next K available datasets of the rotation."""
        if not self.active or self.kept is None:
            return torch.ones(self.num_datasets, dtype=torch.bool)
        candidates = [int(i) for i in self.order if available[int(i)] > 0]
        start = (update * self.per_update) % len(candidates)
        picked = [candidates[(start + k) % len(candidates)] for k in range(min(self.per_update, len(candidates)))]
        mask = torch.zeros(self.num_datasets, dtype=torch.bool)
        mask[picked] = True
        return mask

    def complete(self, inputs: MixerInputs, scored: torch.Tensor) -> MixerInputs:
        """The inputs a mixer sees: every table's rows fresh where ``scored``, the kept (latest scored) rows
        elsewhere, and ``inputs.scored`` set. Without a budget ``inputs`` as they are (everything scored)."""
        if not self.active:
            return inputs
        tables = {name: getattr(inputs, name) for name in SIGNAL_TABLES if getattr(inputs, name) is not None}
        if self.kept is not None:
            tables = {name: torch.where(scored.view(-1, *[1] * (table.dim() - 1)), table, self.kept[name])
                      for name, table in tables.items()}
        self.kept = {name: table.clone() for name, table in tables.items()}
        return dataclasses.replace(inputs, **tables, scored=scored.clone())

    def state_dict(self) -> dict:
        return {"kept": self.kept, "per_update": self.per_update}

    def load_state_dict(self, state: dict | None) -> None:
        if state is None:  # a checkpoint from before the budget existed: the next update scores everything
            return
        if state["per_update"] != self.per_update:
            raise MosConfigError(f"the checkpoint scored {state['per_update']} datasets per update, this run "
                                 f"{self.per_update}: resume with the same mixing.reward_budget and reward_batch")
        self.kept = state["kept"]
