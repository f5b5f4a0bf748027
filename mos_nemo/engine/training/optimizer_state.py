"""Checkpoint handling of the optimizer state that depends on which Adam megatron-core picked.

megatron-core uses Transformer Engine's FusedAdam when TE imports, else apex's, else torch's AdamW
(``megatron.core.optimizer.USING_PYTORCH_OPTIMIZER`` is True only in that last case). torch's AdamW keeps a
per-parameter ``step`` tensor in its state and needs three load workarounds for exact resume: the state
(with ``step``) allocated before the load state dict is built, the current ``step`` kept when megatron's
distributed optimizer copies a checkpoint's per-parameter tensors in, and one ``step`` tensor per parameter
afterwards (megatron restores a single shared one, which AdamW would then advance once per parameter).
FusedAdam keeps ``step`` in its param groups instead; giving it a per-parameter ``step`` makes its
``state_dict()`` raise KeyError 'step', so the workarounds apply only to torch's AdamW.

Whatever the Adam, megatron pairs a checkpoint's param groups with the optimizer's by a tuple of group fields
(``param_group_identifier_keys``); from megatron-core 0.17 that tuple holds ``max_lr`` and ``min_lr``, so
the saved groups are given this launch's values first (``adopt_lr_bounds``).
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch

from megatron.core import optimizer as megatron_optimizer


def torch_optimizers(optimizer) -> list[torch.optim.Optimizer]:
    """The torch optimizers inside megatron's (possibly chained) optimizer."""
    parts = getattr(optimizer, "chained_optimizers", [optimizer])
    return [part.optimizer for part in parts if getattr(part, "optimizer", None) is not None]


def needs_step_workarounds(optimizer) -> bool:
    """True when every inner optimizer is torch's Adam/AdamW (megatron's fallback without TE or apex).

    Decided from the optimizer objects themselves, so it is right whatever megatron imported; the module
    flag ``USING_PYTORCH_OPTIMIZER`` says the same for optimizers megatron built.
    """
    inner = torch_optimizers(optimizer)
    return bool(inner) and all(type(o) in (torch.optim.AdamW, torch.optim.Adam) for o in inner)


def megatron_uses_torch_adam() -> bool:
    """megatron-core's own answer: it fell back to torch's AdamW (no TE, no apex)."""
    return bool(getattr(megatron_optimizer, "USING_PYTORCH_OPTIMIZER", False))


def allocate_state(optimizer) -> None:
    """Give every parameter its AdamW state (zeros, step 0) so the load state dict has a slot for each."""
    for torch_optimizer in torch_optimizers(optimizer):
        for group in torch_optimizer.param_groups:
            for param in group["params"]:
                state = torch_optimizer.state[param]
                state.setdefault("exp_avg", torch.zeros_like(param.data))
                state.setdefault("exp_avg_sq", torch.zeros_like(param.data))
                state.setdefault("step", torch.tensor(0.0))


@contextmanager
def _keep_step_on_load(optimizer):
    """megatron's distributed-optimizer load copies every state key of a parameter from the checkpoint, but
    the checkpoint has no per-parameter ``step`` (it travels in the param groups): keep the current one."""
    patched = []
    for part in getattr(optimizer, "chained_optimizers", [optimizer]):
        original = getattr(part, "_set_main_param_and_optimizer_states", None)
        if original is None:
            continue

        def set_states(model_param, tensors, part=part, original=original):
            group_index, group_order = part.model_param_group_index_map[model_param]
            main_param = part.optimizer.param_groups[group_index]["params"][group_order]
            step = part.optimizer.state[main_param].get("step")
            original(model_param, tensors if step is None else {**tensors, "step": step})

        part._set_main_param_and_optimizer_states = set_states
        patched.append(part)
    try:
        yield
    finally:
        for part in patched:
            del part._set_main_param_and_optimizer_states  # back to the class method


def _untie_step_tensors(optimizer) -> None:
    """One ``step`` tensor per parameter: AdamW increments it in place, once per parameter."""
    for torch_optimizer in torch_optimizers(optimizer):
        for state in torch_optimizer.state.values():
            if isinstance(state.get("step"), torch.Tensor):
                state["step"] = state["step"].clone()


# megatron's OptimizerConfig lr / min_lr (optim.lr, optim.min_lr), copied into every param group. Inert here:
# set_learning_rate writes each group's lr every step from our LinearSchedule, and megatron's scheduler, the
# only reader of these two, is not used.
LR_BOUND_KEYS = ("max_lr", "min_lr")


def _saved_param_groups(state: dict) -> list[list[dict]]:
    """The param-group lists in a loaded optimizer state, whichever nesting megatron gave it: the torch
    optimizer's own dict (``param_groups``), a wrapper's (``{"optimizer": that, ...}``), or one per optimizer
    when megatron chains several (``{0: ..., 1: ...}``)."""
    if isinstance(state.get("param_groups"), list):
        return [state["param_groups"]]
    if isinstance(state.get("optimizer"), dict):
        return _saved_param_groups(state["optimizer"])
    return [groups for key, part in state.items() if isinstance(key, int) and isinstance(part, dict)
            for groups in _saved_param_groups(part)]


def adopt_lr_bounds(state: dict, optimizer) -> None:
    """Give the checkpoint's param groups this launch's ``max_lr`` / ``min_lr``.

    megatron-core >= 0.17 matches saved groups to the optimizer's by every ``ParamGroupOverride`` field,
    these two included; a resume that changes ``optim.lr`` or ``optim.min_lr`` (``checkpoint.allow_changes``)
    would otherwise find no saved group (KeyError in the distributed optimizer's load, ValueError in the
    others) although the groups, their parameters and their Adam state are the same. A key keeps its saved
    value unless every current group has the same one.
    """
    current = {key: {group.get(key) for group in optimizer.param_groups} for key in LR_BOUND_KEYS}
    for groups in _saved_param_groups(state):
        for group in groups:
            for key, values in current.items():
                if key in group and len(values) == 1:
                    group[key] = next(iter(values))


class OptimizerLoad:
    """The load-time handling for ``optimizer``: ``prepare()`` before building the load state dict,
    ``context()`` around the load, ``finish()`` after it. No-ops unless torch's AdamW is in use."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.active = needs_step_workarounds(optimizer)

    def prepare(self) -> None:
        if self.active:
            allocate_state(self.optimizer)

    def context(self):
        return _keep_step_on_load(self.optimizer) if self.active else nullcontext()

    def finish(self) -> None:
        if self.active:
            _untie_step_tensors(self.optimizer)
