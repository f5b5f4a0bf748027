"""The scorer psi (Section 3.1) in two parameterisations, its fit to the prior, and its update (Eq. 6).

- ``logits`` (default): one free logit per dataset, initialised to 1 -- how the authors' released code
  parameterises psi. Fitted to the prior by MSE on the probabilities with the update's own Adam.
- ``mlp``: the paper's text, a 2-layer MLP from the availability vector a in {0,1}^N to N logits.

psi is tiny, so it runs in float64 on the CPU on every rank: the same inputs give bit-identical
probabilities everywhere without any communication. See docs/algorithm.md for every choice made here.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mos_nemo.errors import MosValueError

SCORERS = ("logits", "mlp")
# Adam learning rate per scorer when none is given. logits: the authors' 1e-4. mlp: chosen so one update
# of 200 steps moves p about as far as logits does (bench/scorer_movement.py; docs/algorithm.md).
DEFAULT_LR = {"logits": 1e-4, "mlp": 5e-6}
_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
_MSE_TOLERANCE = 1e-10  # the authors' stopping rule for the logits fit: mean squared error of p vs q_tau
_MSE_MAX_STEPS = 1_000_000
_MLP_FIT_LR = 1e-2
_MLP_FIT_MAX_STEPS = 20_000


def _masked_log_softmax(logits: torch.Tensor, availability: torch.Tensor) -> torch.Tensor:
    """log p over datasets [N]; -inf (p exactly 0) where availability is 0."""
    return torch.log_softmax(logits.masked_fill(availability == 0, float("-inf")), dim=0)


class LogitsScorer(nn.Module):
    """psi = N free logits, initialised to 1 (the authors' ``BaseActor``); p = softmax over available datasets."""

    def __init__(self, num_datasets: int):
        super().__init__()
        self.logits = nn.Parameter(torch.ones(num_datasets, dtype=torch.float64))  # [N]

    def log_probabilities(self, availability: torch.Tensor) -> torch.Tensor:
        return _masked_log_softmax(self.logits, availability)


class MlpScorer(nn.Module):
    """psi: availability a in {0,1}^N -> 2-layer MLP -> p = softmax over the available datasets (Section 3.1)."""

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
        return _masked_log_softmax(self.layers(availability.to(torch.float64)), availability)  # [N]


Scorer = LogitsScorer | MlpScorer


def build_scorer(kind: str, num_datasets: int, hidden: int, activation: str, generator: torch.Generator) -> Scorer:
    if kind == "logits":
        return LogitsScorer(num_datasets)
    if kind == "mlp":
        return MlpScorer(num_datasets, hidden, activation, generator)
    raise MosValueError(f"scorer = {kind!r}: choose one of {list(SCORERS)}")


def fit_to_prior(scorer: Scorer, optimizer: torch.optim.Optimizer, availability: torch.Tensor,
                 prior: torch.Tensor) -> int:
    """Algorithm 1, line 1: make p_psi equal the prior q_tau (Eq. 3). Returns the Adam steps taken.

    ``logits``: the authors' procedure -- minimise MSE(p, q_tau) with the update's own ``optimizer`` (so its
    Adam moments carry into the first updates, as in their code) until the MSE measured before a step is
    <= 1e-10; that last step is still taken. ``mlp``: cross-entropy -sum q log p with a private Adam (lr
    1e-2) until max_i |p(i) - q(i)| < 1e-4; its update optimiser starts fresh.
    """
    if isinstance(scorer, LogitsScorer):
        return _fit_mse(scorer, optimizer, availability, prior)
    return _fit_cross_entropy(scorer, availability, prior)


def _fit_mse(scorer: LogitsScorer, optimizer: torch.optim.Optimizer, availability: torch.Tensor,
             prior: torch.Tensor) -> int:
    """The authors' fit, with Adam written out (no autograd: tens of thousands of steps at tau = 1 take
    seconds instead of minutes); the moments are then installed in ``optimizer``, which continues exactly
    as if it had taken these steps itself."""
    group = optimizer.param_groups[0]
    lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
    if group["weight_decay"] != 0 or group["amsgrad"] or group["maximize"]:
        raise MosValueError("the logits fit expects a plain Adam (no weight decay, amsgrad or maximize)")
    logits = scorer.logits.detach().clone()  # [N]
    exp_avg, exp_avg_sq = torch.zeros_like(logits), torch.zeros_like(logits)  # [N], [N]
    n = logits.numel()
    for step in range(1, _MSE_MAX_STEPS + 1):
        p = _masked_log_softmax(logits, availability).exp()  # [N]
        error = p - prior  # [N]
        loss = float(error.square().mean())
        upstream = error * (2.0 / n)  # d MSE / d p
        grad = p * (upstream - (p * upstream).sum())  # softmax Jacobian-vector product, [N]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**step)).add_(eps)
        logits.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1**step))
        if loss <= _MSE_TOLERANCE:
            break
    else:
        raise MosValueError(
            f"the logits scorer did not fit the prior (MSE <= {_MSE_TOLERANCE}) in {_MSE_MAX_STEPS} Adam steps; "
            "a larger tau (a flatter prior) or a smaller mixing.scorer_lr fits more easily"
        )
    with torch.no_grad():
        scorer.logits.copy_(logits)
    state = optimizer.state_dict()
    state["state"] = {0: {"step": torch.tensor(float(step)), "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}}
    optimizer.load_state_dict(state)
    return step


def _fit_cross_entropy(scorer: MlpScorer, availability: torch.Tensor, prior: torch.Tensor,
                       tolerance: float = 1e-4) -> int:
    optimizer = torch.optim.Adam(scorer.parameters(), lr=_MLP_FIT_LR)
    for step in range(_MLP_FIT_MAX_STEPS):
        log_p = scorer.log_probabilities(availability)
        with torch.no_grad():
            if (log_p.exp() - prior).abs().max().item() < tolerance:
                return step
        loss = -(prior * log_p.masked_fill(prior == 0, 0.0)).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    raise MosValueError(
        f"the mlp scorer did not reach the prior within {tolerance} after {_MLP_FIT_MAX_STEPS} steps; "
        "a larger `hidden` or a larger tau (a flatter prior) fits more easily"
    )


def reinforce_step(
    scorer: Scorer,
    optimizer: torch.optim.Optimizer,
    availability: torch.Tensor,
    rewards: torch.Tensor,
    inner_steps: int,
) -> None:
    """Eq. 6 in expectation over all datasets: ``inner_steps`` Adam steps on -sum_i R(i) log p_psi(i).

    Unavailable datasets get no reward term (their log-probability is -inf and their weight is 0).
    """
    available = availability > 0
    for _ in range(inner_steps):
        log_p = scorer.log_probabilities(availability)
        loss = -(rewards[available] * log_p[available]).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
