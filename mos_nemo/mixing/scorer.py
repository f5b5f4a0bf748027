"""The scorer network psi (Section 3.1): a 2-layer MLP from the availability vector to dataset logits.

psi is tiny (N inputs, ``hidden`` units, N outputs), so it runs in float64 on the CPU on every rank: the
same inputs then give bit-identical probabilities everywhere without any communication.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mos_nemo.errors import MosValueError

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
_FIT_LR = 1e-2
_FIT_MAX_STEPS = 20_000


class Scorer(nn.Module):
    """psi: availability a in {0,1}^N -> p = softmax over the available datasets of MLP(a)."""

    def __init__(self, num_datasets: int, hidden: int, activation: str, generator: torch.Generator):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise MosValueError(f"activation = {activation!r}: choose one of {sorted(_ACTIVATIONS)}")
        if hidden < 1:
            raise MosValueError(f"hidden = {hidden}: the scorer needs at least one hidden unit")
        self.layers = nn.Sequential(
            nn.Linear(num_datasets, hidden, dtype=torch.float64),
            _ACTIVATIONS[activation](),
            nn.Linear(hidden, num_datasets, dtype=torch.float64),
        )
        # Initialise from our own generator (not the global RNG) so psi depends on the seed alone.
        with torch.no_grad():
            for layer in (self.layers[0], self.layers[2]):
                bound = 1.0 / math.sqrt(layer.in_features)
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)

    def log_probabilities(self, availability: torch.Tensor) -> torch.Tensor:
        """log p_psi over datasets [N]; -inf where availability is 0."""
        logits = self.layers(availability.to(torch.float64))  # [N]
        logits = logits.masked_fill(availability == 0, float("-inf"))
        return torch.log_softmax(logits, dim=0)


def fit_to_prior(
    scorer: Scorer, availability: torch.Tensor, prior: torch.Tensor, tolerance: float = 1e-4
) -> int:
    """Fit psi so that max_i |p(i) - q_tau(i)| < tolerance (SPEC: initialisation). Returns the steps taken.

    Minimises the cross-entropy -sum q log p (its minimum is p = q) with a private Adam optimiser; the
    procedure is deterministic, so the same seed gives the same psi.
    """
    optimizer = torch.optim.Adam(scorer.parameters(), lr=_FIT_LR)
    for step in range(_FIT_MAX_STEPS):
        log_p = scorer.log_probabilities(availability)
        with torch.no_grad():
            if (log_p.exp() - prior).abs().max().item() < tolerance:
                return step
        loss = -(prior * log_p.masked_fill(prior == 0, 0.0)).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    raise MosValueError(
        f"the scorer did not reach the prior within {tolerance} after {_FIT_MAX_STEPS} steps; "
        "a larger `hidden` or a larger tau (a flatter prior) fits more easily"
    )


def reinforce_step(
    scorer: Scorer,
    optimizer: torch.optim.Optimizer,
    availability: torch.Tensor,
    rewards: torch.Tensor,
    inner_steps: int,
) -> None:
    """Eq. 6 in expectation over all datasets: minimise -sum_i R(i) log p_psi(i) for ``inner_steps`` steps.

    Unavailable datasets get no reward term (their log-probability is -inf and their weight is 0).
    """
    available = availability > 0
    for _ in range(inner_steps):
        log_p = scorer.log_probabilities(availability)
        loss = -(rewards[available] * log_p[available]).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
