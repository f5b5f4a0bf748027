"""The mixing hook: every S steps, score each dataset with the model as the mixer asks, and update the mixture.

For MoS, Algorithm 1, lines 6-11, made parallelism-aware (docs/algorithm.md, "Rewards under TP, PP and DP"):
1. draw one reward mini-batch of L examples per dataset, keyed on (seed, step, dataset), the same on all ranks
   (under ``mixing.reward_budget``, of the K datasets the rotation scores now; mixing/budget.py);
2. score it with the forward-only schedule (``reward_pass.score_examples``): per-example NLL and pooled
   hidden states, all-reduced so every rank holds the same tables;
3. the mixer's update on every rank from identical inputs (MoS: CosSim Eq. 8 or Diff Eq. 10, MoSpec if a
   target is set, then EMA and REINFORCE; DoReMi: the excess loss; ODM: the observed training losses);
4. broadcast p from global rank 0, so every rank hands bit-identical weights to its blend.

theta0 for Diff and DoReMi (``reference``): ``pool`` (default) draws a fixed pool of examples per dataset
before training (``reference_pool`` each, fewer under a reward budget) and scores it once with theta0;
reward mini-batches are then drawn from the pool and compared with the kept NLL, so no second model is held. ``live`` keeps a frozen theta0 model and scores both.
``mixing.reference_model`` (an HF folder) takes theta0's place in either form.
Diff's NLL covers the response tokens (Eq. 9) or, with ``diff_tokens="sequence"``, the whole example.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mos_nemo.choices import Reference
from mos_nemo.data import reward_example_ids
from mos_nemo.engine.parallel import ParallelState
from mos_nemo.engine.training.reward_pass import RewardRows, gather_examples, pooled_dataset_embeddings, score_examples
from mos_nemo.errors import MosConfigError
from mos_nemo.mixing.budget import (DEFAULT_REWARD_BATCH, RewardRotation, datasets_per_update,  # noqa: F401
                                    reference_pool_per_dataset)
from mos_nemo.mixing.mixer import Mixer, MixerInputs

logger = logging.getLogger(__name__)

_POOL_STEP = -1  # the key of the reference-pool draw; training steps are >= 0


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


class MixingHook:
    """Scores what ``mixer.needs`` and updates the mixer; call it every ``update_every`` steps.

    ``"embeddings"``: pooled hidden states of a reward mini-batch per dataset. ``"nll"``: per-example NLL of the
    current model and of theta0 (the reference pool or a frozen model). ``"train_loss"``: nothing is scored;
    the loop hands each step's per-dataset training loss to ``observe``.
    """

    def __init__(
        self,
        mixer: Mixer,
        datasets: Sequence,
        setup: ScoringSetup,
        *,
        reward_batch: int,
        update_every: int,
        seed: int,
        reference: str = "pool",
        reference_pool: int = 1024,
        reference_model: torch.nn.Module | None = None,
        diff_tokens: str = "response",
        reward_budget: int | None = None,
    ):
        if reference not in Reference.values():
            raise MosConfigError(f"mixing.reference = {reference!r}: choose one of {Reference.values()}")
        if "nll" in mixer.needs and reference == Reference.live and reference_model is None:
            raise MosConfigError("mixing.reference = live needs a frozen theta0 model; none was built")
        if reward_batch < 1 or update_every < 1 or reference_pool < 1:
            raise MosConfigError(
                f"mixing.reward_batch = {reward_batch}, mixing.update_every = {update_every}, "
                f"mixing.reference_pool = {reference_pool}: each must be >= 1"
            )
        self.mixer, self.datasets, self.setup = mixer, list(datasets), setup
        self.reward_batch, self.update_every = reward_batch, update_every
        self.seed, self.reference = seed, reference
        self.reference_pool, self.reference_model = reference_pool, reference_model
        self.diff_tokens = diff_tokens
        self.pool_ids: list[torch.Tensor] | None = None  # per dataset, example ids of the reference pool
        self.pool_nll: list[torch.Tensor] | None = None  # per dataset, theta0's NLL of each pool example
        # mixing.reward_budget: K datasets scored per update in rotation (all N without a budget, or when the
        # mixer scores nothing); mixing/budget.py
        scores = bool({"embeddings", "nll"} & set(mixer.needs))
        per_update = datasets_per_update(reward_budget if scores else None, reward_batch, len(self.datasets))
        self.rotation = RewardRotation(len(self.datasets), per_update, seed)

    @property
    def uses_pool(self) -> bool:
        return "nll" in self.mixer.needs and self.reference == Reference.pool

    def should_update(self, step: int) -> bool:
        """True after every ``update_every``-th completed training step (1-based ``step``)."""
        return step > 0 and step % self.update_every == 0

    def observe(self, step: int, dataset_losses: Sequence, weights: torch.Tensor) -> None:
        """After every applied training step: its per-dataset losses and the weights it was drawn with."""
        if "train_loss" in self.mixer.needs:
            self.mixer.observe(step, dataset_losses, weights)

    # ---- theta0 ---------------------------------------------------------------------------------
    def prepare(self, model: torch.nn.Module) -> None:
        """Score the reference pool with theta0 (the model before any update), or with the given reference
        model (``mixing.reference_model``), which is then dropped. No-op if loaded from a checkpoint."""
        if not self.uses_pool or self.pool_ids is not None:
            return
        if self.reference_model is not None:
            model, self.reference_model = self.reference_model, None
        started = time.perf_counter()
        size = reference_pool_per_dataset(self.reference_pool, self.reward_batch, len(self.datasets),
                                          self.rotation.per_update)  # bounded under a reward budget
        ids = [reward_example_ids(len(ds), min(size, len(ds)), self.seed, _POOL_STEP, i)
               for i, ds in enumerate(self.datasets)]
        logger.info("MoS: scoring the theta0 reference pool for Diff (%d examples, once; kept in checkpoints) ...",
                    sum(len(p) for p in ids))
        scored = self._score(model, gather_examples(self.datasets, ids), with_embeddings=False)
        self.pool_ids = ids
        self.pool_nll = [scored.nll[i, : len(pool)].clone() for i, pool in enumerate(ids)]
        logger.info("mixing: scored the theta0 reference pool (%d examples) in %.1fs",
                    sum(len(p) for p in ids), time.perf_counter() - started)

    # ---- the scored signals ---------------------------------------------------------------------
    def score_inputs(self, model: torch.nn.Module, step: int) -> MixerInputs:
        """The signals ``mixer.needs`` for step ``step``, identical on every rank. Under a reward budget only
        the rotation's K datasets are scored; the others' rows are their latest scored ones."""
        scored = self.rotation.scored(step // self.update_every, self.mixer.availability)  # [N] bool
        inputs = MixerInputs(step=step)
        if "embeddings" in self.mixer.needs:
            result = self._score(model, self._draw_rows(step, scored), with_embeddings=True)
            inputs.embeddings = pooled_dataset_embeddings(result)  # NaN rows where not scored
        if "nll" in self.mixer.needs:
            nll_against_theta0 = self._nll_pool if self.reference == Reference.pool else self._nll_live
            inputs.nll, inputs.nll_ref, inputs.mask = nll_against_theta0(model, step, scored)
        return self.rotation.complete(inputs, scored)

    def compute_raw_rewards(self, model: torch.nn.Module, step: int) -> torch.Tensor:
        """MoS's raw rewards R'(i) [N] float64 (CosSim or Diff) of the current model at step ``step``."""
        return self.mixer.raw_rewards(self.score_inputs(model, step))

    def _draw_rows(self, step: int, scored: torch.Tensor) -> RewardRows:
        """L examples of each scored dataset, none of the others."""
        ids = [
            reward_example_ids(len(ds), self.reward_batch if scored[i] else 0, self.seed, step, i)
            for i, ds in enumerate(self.datasets)
        ]
        return gather_examples(self.datasets, ids)

    def _nll_live(self, model: torch.nn.Module, step: int, scored: torch.Tensor):
        """(NLL, theta0's NLL, mask) [N, L] of a fresh reward mini-batch, theta0 a frozen model."""
        rows = self._draw_rows(step, scored)
        scored = self._score(model, rows, with_embeddings=False)
        reference = self._score(self.reference_model, rows, with_embeddings=False)
        return scored.nll, reference.nll, scored.present

    def _nll_pool(self, model: torch.nn.Module, step: int, scored: torch.Tensor):
        """(NLL, theta0's NLL, mask) [N, L] of a reward mini-batch drawn from the reference pool."""
        if self.pool_nll is None:
            raise MosConfigError("the reference pool was never scored: call prepare(model) before training")
        positions = [
            reward_example_ids(len(pool), self.reward_batch if scored[i] else 0, self.seed, step, i)
            for i, pool in enumerate(self.pool_ids)
        ]
        ids = [pool[pos] for pool, pos in zip(self.pool_ids, positions)]
        result = self._score(model, gather_examples(self.datasets, ids), with_embeddings=False)
        nll_ref = torch.zeros_like(result.nll)  # [N, L]; rows not scored stay 0 (replaced by the kept ones)
        for i, (nll, pos) in enumerate(zip(self.pool_nll, positions)):
            nll_ref[i, : len(pos)] = nll[pos]
        return result.nll, nll_ref, result.present

    def _score(self, model: torch.nn.Module, rows: RewardRows, with_embeddings: bool):
        s = self.setup
        return score_examples(
            model, rows, parallel=s.parallel, micro_batch_size=s.micro_batch_size, seq_length=s.seq_length,
            pad_id=s.pad_id, hidden_size=s.hidden_size, with_embeddings=with_embeddings,
            nll_tokens=self.diff_tokens, pack=s.pack,
        )

    def __call__(self, model: torch.nn.Module, step: int) -> MixtureUpdate:
        """Score, update the mixer, and return the new weights (identical on every rank)."""
        started = time.perf_counter()
        inputs = self.score_inputs(model, step)
        skipped_before = self.mixer.num_skipped
        weights = self.mixer.update(inputs)
        weights = _broadcast_from_rank0(weights, self.setup.parallel.device)
        return MixtureUpdate(
            step=step, weights=weights, rewards_raw=self.mixer.rewards_raw, rewards=self.mixer.rewards,
            skipped=self.mixer.num_skipped > skipped_before, seconds=time.perf_counter() - started,
            scored=inputs.scored,
        )

    # ---- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        # "mos" is the mixer's state under its historical key, so earlier MoS checkpoints still load.
        return {"mos": self.mixer.state_dict(), "pool_ids": self.pool_ids, "pool_nll": self.pool_nll,
                "diff_tokens": self.diff_tokens, "rotation": self.rotation.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        saved = state.get("diff_tokens", "response")
        if self.uses_pool and state["pool_nll"] is not None and saved != self.diff_tokens:
            raise MosConfigError(f"the checkpoint's theta0 pool NLL is over mixing.diff_tokens={saved}, this run "
                                 f"has {self.diff_tokens}: resume with mixing.diff_tokens={saved}")
        self.mixer.load_state_dict(state["mos"])
        self.pool_ids, self.pool_nll = state["pool_ids"], state["pool_nll"]
        self.rotation.load_state_dict(state.get("rotation"))
        if self.uses_pool and self.pool_nll is not None:  # the reference's pool NLL came with the checkpoint
            self.reference_model = None


def _broadcast_from_rank0(weights: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Every rank uses rank 0's p, so blends agree bit for bit even if a platform's float64 math differed."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return weights
    buffer = weights.to(device=device, dtype=torch.float64).contiguous()
    dist.broadcast(buffer, src=0)
    return buffer.cpu()
