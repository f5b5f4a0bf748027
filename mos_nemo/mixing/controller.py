"""MixtureOfSkills: the MoS controller of Algorithm 1 (prior, scorer psi, EMA, REINFORCE, availability).

Framework-free: it sees reward vectors, not models. The training loop computes raw rewards (CosSim or
Diff) every S steps, calls ``update``, and hands the returned probabilities to the data blend.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence

import torch

from mos_nemo.errors import MosValueError
from mos_nemo.mixing.mixer import changed_availability
from mos_nemo.mixing.prior import temperature_prior, validate_sizes
from mos_nemo.mixing.rewards import smooth_rewards
from mos_nemo.mixing.scorer import DEFAULT_LR, SCORERS, build_scorer, fit_to_prior, reinforce_step

logger = logging.getLogger(__name__)

_STATE_VERSION = 2  # 2 adds the scorer kind; version 1 states were always the mlp scorer
EMA_INITS = ("one", "raw")


class MixtureOfSkills:
    """Learned sampling distribution over N datasets (Wu et al., 2024, Algorithm 1).

    Args:
        sizes: examples per dataset, M_i (for the prior, Eq. 3).
        prior_tau: temperature of the prior psi is fitted to at construction; inf is uniform (the paper's).
        ema_beta: beta of Eq. 11; the newest reward weighs beta.
        lr: Adam learning rate of psi (gamma in Algorithm 1); None: ``DEFAULT_LR[scorer]``.
        inner_steps: Adam steps on Eq. 6 per update.
        hidden: width of psi's hidden layer (``mlp`` only).
        p_min: probability floor per available dataset, applied after each update (0 = off).
        seed: seeds psi's initialisation; nothing after construction is random.
        names: dataset names, for ``describe`` and logs.
        activation: "tanh" or "relu" (``mlp`` only).
        scorer: "logits" (N free logits, the authors' code; default) or "mlp" (the paper's 2-layer MLP).
        ema_init: the "previous reward" of the first update (Eq. 11): "one" (the authors' code starts it at
            1; default) or "raw" (R_0 = R'_0, the first update uses the raw reward).
    """

    def __init__(
        self,
        sizes: Sequence[float] | torch.Tensor,
        prior_tau: float = float("inf"),
        ema_beta: float = 0.9,
        lr: float | None = None,
        inner_steps: int = 200,
        hidden: int = 64,
        p_min: float = 0.0,
        seed: int = 0,
        names: Sequence[str] | None = None,
        activation: str = "tanh",
        scorer: str = "logits",
        ema_init: str = "one",
    ):
        self.sizes = validate_sizes(sizes)
        n = self.sizes.numel()
        self.names = _check_names(names, n)
        if not 0.0 < ema_beta <= 1.0:
            raise MosValueError(f"ema_beta = {ema_beta}: must be in (0, 1] (0.9 in the paper)")
        if scorer not in SCORERS:
            raise MosValueError(f"scorer = {scorer!r}: choose one of {list(SCORERS)}")
        if ema_init not in EMA_INITS:
            raise MosValueError(f"ema_init = {ema_init!r}: choose one of {list(EMA_INITS)}")
        lr = DEFAULT_LR[scorer] if lr is None else lr
        if not (lr > 0 and math.isfinite(lr)):
            raise MosValueError(f"lr = {lr}: the scorer learning rate must be a positive number")
        if isinstance(inner_steps, bool) or not isinstance(inner_steps, int) or inner_steps < 1:
            raise MosValueError(f"inner_steps = {inner_steps!r}: must be an integer >= 1")
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise MosValueError(f"hidden = {hidden!r}: the mlp scorer needs at least one hidden unit")
        if not 0.0 <= p_min < 1.0 / n:
            raise MosValueError(f"p_min = {p_min}: must be in [0, 1/N) = [0, {1.0 / n:.4g})")
        self.prior = temperature_prior(self.sizes, prior_tau)  # [N] float64
        self.prior_tau, self.ema_beta, self.lr = float(prior_tau), float(ema_beta), float(lr)
        self.inner_steps, self.p_min, self.seed = inner_steps, float(p_min), int(seed)
        self.scorer_kind, self.ema_init = scorer, ema_init

        generator = torch.Generator().manual_seed(self.seed)
        self.availability = torch.ones(n, dtype=torch.float64)  # [N], 1 = usable
        self.scorer = build_scorer(scorer, n, hidden, activation, generator)
        self.optimizer = torch.optim.Adam(self.scorer.parameters(), lr=self.lr)
        self.fit_steps = fit_to_prior(self.scorer, self.optimizer, self.availability, self.prior)
        self.rewards: torch.Tensor | None = None  # smoothed, Eq. 11; None before the first update
        self.rewards_raw: torch.Tensor | None = None
        self.num_updates = 0
        self.num_skipped = 0
        self._probabilities = self._compute_probabilities()

    # ---- the distribution ----------------------------------------------------------------------
    @property
    def probabilities(self) -> torch.Tensor:
        """Current sampling distribution p [N] (float64, sums to 1, 0 for excluded datasets)."""
        return self._probabilities.clone()

    def _compute_probabilities(self) -> torch.Tensor:
        with torch.no_grad():
            p = self.scorer.log_probabilities(self.availability).exp()  # [N]
        if self.p_min > 0:
            available = self.availability > 0
            floor = torch.where(available, torch.full_like(p, self.p_min), torch.zeros_like(p))
            p = (1.0 - int(available.sum()) * self.p_min) * p + floor
        return p

    def update(self, raw_rewards: Sequence[float] | torch.Tensor, scored: torch.Tensor | None = None) -> torch.Tensor:
        """One scorer update (Algorithm 1, lines 7-11): EMA (Eq. 11), then REINFORCE (Eq. 6).

        Rewards of excluded datasets are ignored (they may be NaN). ``scored`` [N] bool (``mixing.reward_budget``):
        only these datasets were scored; the others keep their smoothed reward exactly and their raw reward
        is ignored (before the first applied update there is no smoothed reward to keep: every raw reward
        is used). If any available dataset's reward that is used is not finite, the update is skipped, p is
        kept and a warning is logged. Returns the new p [N].
        """
        raw = torch.as_tensor(raw_rewards, dtype=torch.float64).clone()
        if raw.shape != self.sizes.shape:
            raise MosValueError(f"raw_rewards has shape {tuple(raw.shape)}: expected [{self.sizes.numel()}], one per dataset")
        available = self.availability > 0
        kept = None if scored is None or self.rewards is None else ~scored  # not scored: R stays (below)
        if kept is not None:
            raw = torch.where(kept, self.rewards, raw)
        if not bool(torch.isfinite(raw[available]).all()):
            self.num_skipped += 1
            logger.warning("MoS update skipped: non-finite reward %s; keeping p = %s", self._by_name(raw), self._by_name(self._probabilities))
            return self.probabilities
        previous = self.rewards
        if previous is None and self.ema_init == "one":  # the authors' code starts the EMA at R = 1
            previous = torch.ones_like(raw)
        # Excluded datasets carry their previous smoothed reward (they are not in Eq. 6's sum anyway).
        raw = torch.where(available, raw, previous if previous is not None else torch.zeros_like(raw))
        self.rewards_raw = raw
        self.rewards = smooth_rewards(raw, previous, self.ema_beta)
        if kept is not None:  # exactly, not beta * R + (1 - beta) * R rounded
            self.rewards = torch.where(kept, previous, self.rewards)
        reinforce_step(self.scorer, self.optimizer, self.availability, self.rewards, self.inner_steps)
        self.num_updates += 1
        self._probabilities = self._compute_probabilities()
        logger.debug("MoS update %d: rewards %s -> p %s", self.num_updates, self._by_name(self.rewards), self._by_name(self._probabilities))
        return self.probabilities

    # ---- availability --------------------------------------------------------------------------
    def set_available(self, dataset: int | str, available: bool) -> torch.Tensor:
        """Include or exclude a dataset at run time (psi's input a(i)); returns the new p."""
        new = changed_availability(self.names, self.availability, dataset, available)
        if self.p_min * int((new > 0).sum()) >= 1.0:
            raise MosValueError(f"p_min = {self.p_min} is too large for {int((new > 0).sum())} datasets")
        self.availability = new
        self._probabilities = self._compute_probabilities()
        return self.probabilities

    def exclude(self, dataset: int | str) -> torch.Tensor:
        """Never draw ``dataset`` again (until ``include``); its probability becomes exactly 0."""
        return self.set_available(dataset, False)

    def include(self, dataset: int | str) -> torch.Tensor:
        return self.set_available(dataset, True)

    # ---- reporting -----------------------------------------------------------------------------
    def _by_name(self, values: torch.Tensor) -> dict[str, float]:
        return {name: round(float(v), 6) for name, v in zip(self.names, values)}

    def describe(self) -> str:
        """A small table of the current distribution by dataset name."""
        width = max(len(name) for name in self.names)
        lines = [f"MixtureOfSkills after {self.num_updates} updates ({self.num_skipped} skipped):"]
        for i, name in enumerate(self.names):
            reward = "-" if self.rewards is None else f"{float(self.rewards[i]):.4f}"
            excluded = "" if self.availability[i] > 0 else "  (excluded)"
            lines.append(f"  {name:<{width}}  p={float(self._probabilities[i]):.4f}  reward={reward}{excluded}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.describe()

    # ---- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue bit for bit: psi, its optimiser, EMA, availability, counters.

        (No RNG state is needed: after psi's seeded initialisation nothing is random.)
        """
        return copy.deepcopy(
            {
                "version": _STATE_VERSION,
                "scorer_kind": self.scorer_kind,
                "names": list(self.names),
                "sizes": self.sizes,
                "scorer": self.scorer.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "rewards": self.rewards,
                "rewards_raw": self.rewards_raw,
                "availability": self.availability,
                "num_updates": self.num_updates,
                "num_skipped": self.num_skipped,
            }
        )

    def load_state_dict(self, state: dict) -> None:
        version = state.get("version")
        if version not in (1, _STATE_VERSION):
            raise MosValueError(f"mixing state version {version!r}: expected {_STATE_VERSION}")
        saved_kind = state.get("scorer_kind", "mlp")  # version 1 had only the mlp scorer
        if saved_kind != self.scorer_kind:
            raise MosValueError(
                f"mixing state was saved with mixing.scorer={saved_kind}, this run has {self.scorer_kind}: "
                f"resume with mixing.scorer={saved_kind}"
            )
        if list(state["names"]) != self.names or not torch.equal(state["sizes"], self.sizes):
            raise MosValueError(
                f"mixing state is for datasets {list(state['names'])} with sizes {state['sizes'].tolist()}, "
                f"this run has {self.names} with sizes {self.sizes.tolist()}: resume with the same datasets"
            )
        state = copy.deepcopy(state)
        self.scorer.load_state_dict(state["scorer"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rewards, self.rewards_raw = state["rewards"], state["rewards_raw"]
        self.availability = state["availability"]
        self.num_updates, self.num_skipped = state["num_updates"], state["num_skipped"]
        self._probabilities = self._compute_probabilities()


def _check_names(names: Sequence[str] | None, n: int) -> list[str]:
    if names is None:
        return [f"dataset_{i}" for i in range(n)]
    names = [str(name) for name in names]
    if len(names) != n:
        raise MosValueError(f"names has {len(names)} entries but sizes has {n}: give one name per dataset")
    if len(set(names)) != n:
        raise MosValueError(f"names {names} contain duplicates: dataset names must be unique")
    return names
