"""The MoS reward hook: every S steps, score each dataset with the model and update the mixture.

Algorithm 1, lines 6-11, made parallelism-aware (docs/algorithm.md, "Rewards under TP, PP and DP"):
1. draw one reward mini-batch of L examples per dataset, keyed on (seed, step, dataset), the same on all ranks;
2. score it with the forward-only schedule (``reward_pass.score_examples``): per-example NLL and pooled
   hidden states, all-reduced so every rank holds the same tables;
3. CosSim (Eq. 8) or Diff (Eq. 10), MoSpec if a target is set, then ``MixtureOfSkills.update`` (EMA,
   REINFORCE) on every rank from identical inputs;
4. broadcast p from global rank 0, so every rank hands bit-identical weights to its blend.

theta0 for Diff (``reference``): ``pool`` (default) draws a fixed pool of examples per dataset before
training and scores it once with theta0; reward mini-batches are then drawn from the pool and compared
with the kept NLL, so no second model is held. ``live`` keeps a frozen theta0 model and scores both.
Diff's NLL covers the response tokens (Eq. 9) or, with ``diff_tokens="sequence"``, the whole example.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mos_nemo.choices import Reference, Reward
from mos_nemo.data import reward_example_ids
from mos_nemo.engine.parallel import ParallelState
from mos_nemo.engine.training.reward_pass import RewardRows, gather_examples, pooled_dataset_embeddings, score_examples
from mos_nemo.errors import MosConfigError
from mos_nemo.mixing import MixtureOfSkills, cossim_reward, diff_reward
from mos_nemo.mixing.budget import RewardRotation, datasets_per_update, reference_pool_per_dataset

logger = logging.getLogger(__name__)

_POOL_STEP = -1  # the key of the reference-pool draw; training steps are >= 0
# mixing.reward_batch = null: the authors' code scores 8 x 8 examples for CosSim and 8 x 2 for Diff.
DEFAULT_REWARD_BATCH = {"cossim": 64, "diff": 16}


@dataclass
class MixtureUpdate:
    """What one hook call did, for mixture.jsonl and TensorBoard."""

    step: int
    weights: torch.Tensor  # [N] float64
    rewards_raw: torch.Tensor  # [N] float64, this update's raw rewards
    rewards: torch.Tensor | None  # [N] float64, smoothed (Eq. 11); None if the update was skipped first
    skipped: bool
    seconds: float
    scored: torch.Tensor | None = None  # [N] bool under mixing.reward_budget: the datasets scored; None: all


@dataclass
class ScoringSetup:
    """How reward batches are run: fixed shapes keep per-example numbers independent of batching."""

    parallel: ParallelState
    micro_batch_size: int
    seq_length: int
    pad_id: int
    hidden_size: int
    pack: bool = True  # mixing.reward_pack: examples packed into rows (segment-aware attention)


class MosRewardHook:
    """Computes MoS rewards with the model and updates ``mos``; call it every ``update_every`` steps."""

    def __init__(
        self,
        mos: MixtureOfSkills,
        datasets: Sequence,
        setup: ScoringSetup,
        *,
        reward: str,
        reward_batch: int,
        update_every: int,
        seed: int,
        target: int | None = None,
        reference: str = "pool",
        reference_pool: int = 1024,
        reference_model: torch.nn.Module | None = None,
        diff_tokens: str = "response",
        reward_budget: int | None = None,
    ):
        if reward not in Reward.values():
            raise MosConfigError(f"mixing.reward = {reward!r}: choose one of {Reward.values()}")
        if reference not in Reference.values():
            raise MosConfigError(f"mixing.reference = {reference!r}: choose one of {Reference.values()}")
        if reward == Reward.diff and reference == Reference.live and reference_model is None:
            raise MosConfigError("mixing.reference = live needs a frozen theta0 model; none was built")
        if reward_batch < 1 or update_every < 1 or reference_pool < 1:
            raise MosConfigError(
                f"mixing.reward_batch = {reward_batch}, mixing.update_every = {update_every}, "
                f"mixing.reference_pool = {reference_pool}: each must be >= 1"
            )
        self.mos, self.datasets, self.setup = mos, list(datasets), setup
        self.reward, self.reward_batch, self.update_every = reward, reward_batch, update_every
        self.seed, self.target, self.reference = seed, target, reference
        self.reference_pool, self.reference_model = reference_pool, reference_model
        self.diff_tokens = diff_tokens
        self.pool_ids: list[torch.Tensor] | None = None  # per dataset, example ids of the reference pool
        self.pool_nll: list[torch.Tensor] | None = None  # per dataset, theta0's NLL of each pool example
        # mixing.reward_budget: K datasets per update in rotation (all N without a budget); mixing/budget.py
        self.rotation = RewardRotation(len(self.datasets), datasets_per_update(reward_budget, reward_batch,
                                                                               len(self.datasets)), seed)
        self.scored: torch.Tensor | None = None  # [N] bool, the datasets the latest reward pass scored

    @property
    def uses_pool(self) -> bool:
        return self.reward == Reward.diff and self.reference == Reference.pool

    def should_update(self, step: int) -> bool:
        """True after every ``update_every``-th completed training step (1-based ``step``)."""
        return step > 0 and step % self.update_every == 0

    # ---- theta0 ---------------------------------------------------------------------------------
    def prepare(self, model: torch.nn.Module) -> None:
        """Score the reference pool with theta0 (the model before any update). No-op if loaded from a checkpoint."""
        if not self.uses_pool or self.pool_ids is not None:
            return
        started = time.perf_counter()
        size = reference_pool_per_dataset(self.reference_pool, self.reward_batch, len(self.datasets),
                                          self.rotation.per_update)
        ids = [reward_example_ids(len(ds), min(size, len(ds)), self.seed, _POOL_STEP, i)
               for i, ds in enumerate(self.datasets)]
        scored = self._score(model, gather_examples(self.datasets, ids), with_embeddings=False)
        self.pool_ids = ids
        self.pool_nll = [scored.nll[i, : len(pool)].clone() for i, pool in enumerate(ids)]
        logger.info("MoS: scored the theta0 reference pool (%d examples) in %.1fs",
                    sum(len(p) for p in ids), time.perf_counter() - started)

    # ---- rewards --------------------------------------------------------------------------------
    def compute_raw_rewards(self, model: torch.nn.Module, step: int) -> torch.Tensor:
        """Raw rewards R'(i) [N] float64 of the current model on step ``step``'s reward mini-batches; with a
        reward budget, of the datasets in ``self.scored`` only (NaN elsewhere for Diff; see mixing/budget.py)."""
        self.scored = self.rotation.scored(step // self.update_every, self.mos.availability)
        source = self.reference if self.reward == Reward.diff else None  # theta0 matters to Diff only
        return _REWARDS[self.reward, source](self, model, step)

    def _draw_rows(self, step: int) -> RewardRows:
        ids = [
            reward_example_ids(len(ds), self.reward_batch if self.scored[i] else 0, self.seed, step, i)
            for i, ds in enumerate(self.datasets)
        ]
        return gather_examples(self.datasets, ids)

    def _cossim(self, model: torch.nn.Module, step: int) -> torch.Tensor:
        scored = self._score(model, self._draw_rows(step), with_embeddings=True)
        z = self.rotation.merge_embeddings(pooled_dataset_embeddings(scored), self.scored)  # kept z_n where unscored
        return cossim_reward(z, target=self.target)

    def _diff_live(self, model: torch.nn.Module, step: int) -> torch.Tensor:
        rows = self._draw_rows(step)
        scored = self._score(model, rows, with_embeddings=False)
        reference = self._score(self.reference_model, rows, with_embeddings=False)
        return self._diff_of_scored(scored.nll, reference.nll, scored.present)

    def _diff_pool(self, model: torch.nn.Module, step: int) -> torch.Tensor:
        if self.pool_nll is None:
            raise MosConfigError("the reference pool was never scored: call prepare(model) before training")
        positions = [
            reward_example_ids(len(pool), self.reward_batch if self.scored[i] else 0, self.seed, step, i)
            for i, pool in enumerate(self.pool_ids)
        ]
        ids = [pool[pos] for pool, pos in zip(self.pool_ids, positions)]
        scored = self._score(model, gather_examples(self.datasets, ids), with_embeddings=False)
        nll_ref = torch.zeros_like(scored.nll)  # [N, L]
        for i, (nll, pos) in enumerate(zip(self.pool_nll, positions)):
            nll_ref[i, : len(pos)] = nll[pos]
        return self._diff_of_scored(scored.nll, nll_ref, scored.present)

    def _diff_of_scored(self, nll: torch.Tensor, nll_ref: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Eq. 10 for the scored datasets; NaN for the others (the controller keeps their smoothed reward)."""
        rows = self.scored.nonzero().flatten()
        target = None
        if self.target is not None and bool(self.scored[self.target]):
            target = int((rows == self.target).nonzero())
        reward = torch.full((len(self.datasets),), float("nan"), dtype=torch.float64)
        reward[rows] = diff_reward(nll[rows], nll_ref[rows], target=target, mask=present[rows])
        return reward

    def _score(self, model: torch.nn.Module, rows: RewardRows, with_embeddings: bool):
        s = self.setup
        return score_examples(
            model, rows, parallel=s.parallel, micro_batch_size=s.micro_batch_size, seq_length=s.seq_length,
            pad_id=s.pad_id, hidden_size=s.hidden_size, with_embeddings=with_embeddings,
            nll_tokens=self.diff_tokens, pack=s.pack,
        )

    def __call__(self, model: torch.nn.Module, step: int) -> MixtureUpdate:
        """Score, update psi, and return the new weights (identical on every rank)."""
        started = time.perf_counter()
        raw = self.compute_raw_rewards(model, step)
        skipped_before = self.mos.num_skipped
        weights = self.mos.update(raw, scored=self.scored if self.rotation.active else None)
        self.rotation.scored_once |= self.mos.num_skipped == skipped_before
        weights = _broadcast_from_rank0(weights, self.setup.parallel.device)
        return MixtureUpdate(
            step=step, weights=weights, rewards_raw=raw, rewards=self.mos.rewards,
            skipped=self.mos.num_skipped > skipped_before, seconds=time.perf_counter() - started,
            scored=self.scored.clone() if self.rotation.active else None,
        )

    # ---- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"mos": self.mos.state_dict(), "pool_ids": self.pool_ids, "pool_nll": self.pool_nll,
                "diff_tokens": self.diff_tokens, "rotation": self.rotation.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        saved = state.get("diff_tokens", "response")
        if self.uses_pool and state["pool_nll"] is not None and saved != self.diff_tokens:
            raise MosConfigError(f"the checkpoint's theta0 pool NLL is over mixing.diff_tokens={saved}, this run "
                                 f"has {self.diff_tokens}: resume with mixing.diff_tokens={saved}")
        self.mos.load_state_dict(state["mos"])
        self.pool_ids, self.pool_nll = state["pool_ids"], state["pool_nll"]
        self.rotation.load_state_dict(state.get("rotation"))


# The reward registry: (mixing.reward, theta0 source or None) -> how the raw rewards are computed.
_REWARDS = {
    (Reward.cossim, None): MosRewardHook._cossim,  # Eq. 8 on pooled hidden states
    (Reward.diff, Reference.live): MosRewardHook._diff_live,  # Eq. 10 against a frozen theta0 model
    (Reward.diff, Reference.pool): MosRewardHook._diff_pool,  # Eq. 10 against theta0's kept pool NLL
}


def _broadcast_from_rank0(weights: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Every rank uses rank 0's p, so blends agree bit for bit even if a platform's float64 math differed."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return weights
    buffer = weights.to(device=device, dtype=torch.float64).contiguous()
    dist.broadcast(buffer, src=0)
    return buffer.cpu()
