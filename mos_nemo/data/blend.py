"""The reweightable blend: which dataset and which examples make up each global batch (paper Algorithm 1).

- `mode="batch"` (Algorithm 1): at step t one dataset i ~ p is drawn and the whole global batch comes from it.
- `mode="sample"`: each of the global batch's examples draws its dataset independently from p.
The dataset draw of step t uses a generator keyed on (seed, t, "blend") and the current weights only, so
every data-parallel rank computes the same global batch without communication and takes its contiguous
slice. Each dataset is walked through its own permutation, keyed on (seed, "permutation", name, epoch) and
reshuffled at each of its epochs, so small datasets are up-sampled (repeated) as in the paper. An example
can appear twice in one global batch only when its dataset's epoch ends inside that batch.
Weights live in this object in the main process (no DataLoader worker holds a copy) and `set_weights`
takes effect at the next `draw`; nothing is precomputed from them, so nothing has to be rebuilt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from mos_nemo.choices import Mode
from mos_nemo.data.rng import keyed_generator
from mos_nemo.errors import MosCheckpointError, MosValueError

MODES = Mode.values()  # batch | sample


@dataclass
class BlendDraw:
    """The global batch of one step: dataset and example index of each of its examples."""

    step: int
    dataset_ids: torch.Tensor  # [global_batch] int64
    example_ids: torch.Tensor  # [global_batch] int64
    dp_rank: int = 0
    dp_size: int = 1

    def local(self, dp_rank: int | None = None, dp_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(dataset_ids, example_ids) of one rank's contiguous slice of global_batch / dp_size examples."""
        dp_rank = self.dp_rank if dp_rank is None else dp_rank
        dp_size = self.dp_size if dp_size is None else dp_size
        _check_dp(len(self.dataset_ids), dp_rank, dp_size)
        per_rank = len(self.dataset_ids) // dp_size
        window = slice(dp_rank * per_rank, (dp_rank + 1) * per_rank)
        return self.dataset_ids[window], self.example_ids[window]

    @property
    def local_dataset_ids(self) -> torch.Tensor:
        return self.local()[0]

    @property
    def local_example_ids(self) -> torch.Tensor:
        return self.local()[1]


def _check_dp(global_batch_size: int, dp_rank: int, dp_size: int) -> None:
    if dp_size < 1 or not 0 <= dp_rank < dp_size:
        raise MosValueError(f"dp_rank={dp_rank}, dp_size={dp_size}: need dp_size >= 1 and 0 <= dp_rank < dp_size")
    if global_batch_size % dp_size:
        raise MosValueError(f"global_batch_size={global_batch_size} is not divisible by dp_size={dp_size}; "
                            "choose a global batch that is a multiple of the data-parallel size")


def normalised_weights(weights: Sequence[float] | torch.Tensor, n: int) -> torch.Tensor:
    """[n] float64 probabilities from non-negative weights with a positive sum."""
    values = torch.as_tensor(weights, dtype=torch.float64).detach().cpu().flatten()
    if values.numel() != n:
        raise MosValueError(f"got {values.numel()} weights for {n} datasets; give one weight per dataset")
    if not torch.isfinite(values).all() or (values < 0).any() or values.sum() <= 0:
        raise MosValueError(f"weights {values.tolist()} must be finite, >= 0 and not all 0")
    return values / values.sum()


class ReweightableBlend:
    """Draws global batches from N datasets with weights that may change at any step (see module doc)."""

    def __init__(self, sizes: Sequence[int], names: Sequence[str], global_batch_size: int,
                 weights: Sequence[float] | torch.Tensor | None = None, mode: str = "batch", seed: int = 0,
                 dp_rank: int = 0, dp_size: int = 1):
        if len(sizes) == 0 or len(sizes) != len(names):
            raise MosValueError(f"got {len(sizes)} sizes and {len(names)} names: need one size per named dataset")
        if len(set(names)) != len(names):
            raise MosValueError(f"dataset names {list(names)} contain duplicates; names must be unique")
        if any(int(size) < 1 for size in sizes):
            raise MosValueError(f"dataset sizes {list(sizes)} must all be >= 1 (an empty dataset cannot be drawn)")
        if mode not in MODES:
            raise MosValueError(f"mode={mode!r} is unknown: use 'batch' (Algorithm 1) or 'sample'")
        if global_batch_size < 1:
            raise MosValueError(f"global_batch_size={global_batch_size} must be >= 1")
        _check_dp(global_batch_size, dp_rank, dp_size)
        self.sizes = [int(size) for size in sizes]
        self.names = list(names)
        self.global_batch_size = int(global_batch_size)
        self.mode = mode
        self.seed = int(seed)
        self.dp_rank, self.dp_size = dp_rank, dp_size
        n = len(self.sizes)
        self._weights = normalised_weights(torch.ones(n) if weights is None else weights, n)
        self.step = 0
        self.cursors = [0] * n  # position in the current epoch's permutation of each dataset
        self.epochs = [0] * n
        self._example_counts = [0] * n
        self._batch_counts = [0] * n
        self._permutations: dict[int, tuple[int, torch.Tensor]] = {}  # derived from the state, not part of it

    @property
    def weights(self) -> torch.Tensor:
        """[N] float64 current sampling probabilities."""
        return self._weights.clone()

    def set_weights(self, weights: Sequence[float] | torch.Tensor) -> None:
        """New sampling weights (normalised); they govern the next draw. A weight of 0 never draws."""
        self._weights = normalised_weights(weights, len(self.sizes))

    @property
    def counts(self) -> dict[str, int]:
        """Examples drawn so far from each dataset."""
        return dict(zip(self.names, self._example_counts))

    @property
    def batch_counts(self) -> dict[str, int]:
        """Global batches drawn so far whose dataset was each one (batch mode; all 0 in sample mode)."""
        return dict(zip(self.names, self._batch_counts))

    def draw(self) -> BlendDraw:
        """The next global batch; advances the step and the cursors of the datasets used."""
        generator = keyed_generator(self.seed, self.step, "blend")
        size = self.global_batch_size
        if self.mode == "batch":
            dataset = int(torch.multinomial(self._weights, 1, generator=generator))
            dataset_ids = torch.full((size,), dataset, dtype=torch.int64)  # [B]
            example_ids = self._take(dataset, size)  # [B]
            self._batch_counts[dataset] += 1
        else:
            dataset_ids = torch.multinomial(self._weights, size, replacement=True, generator=generator)  # [B]
            example_ids = torch.empty(size, dtype=torch.int64)  # [B]
            for dataset in torch.unique(dataset_ids).tolist():  # ascending, so cursors advance in a fixed order
                positions = (dataset_ids == dataset).nonzero().flatten()
                example_ids[positions] = self._take(dataset, len(positions))
        for dataset, count in zip(*torch.unique(dataset_ids, return_counts=True)):
            self._example_counts[int(dataset)] += int(count)
        draw = BlendDraw(self.step, dataset_ids, example_ids, self.dp_rank, self.dp_size)
        self.step += 1
        return draw

    def _permutation(self, dataset: int) -> torch.Tensor:
        epoch = self.epochs[dataset]
        cached = self._permutations.get(dataset)
        if cached is None or cached[0] != epoch:
            generator = keyed_generator(self.seed, "permutation", self.names[dataset], epoch)
            cached = (epoch, torch.randperm(self.sizes[dataset], generator=generator))
            self._permutations[dataset] = cached
        return cached[1]

    def _take(self, dataset: int, count: int) -> torch.Tensor:
        """The next `count` example indices of a dataset's epoch-wise permutations."""
        pieces, size = [], self.sizes[dataset]
        while count > 0:
            cursor = self.cursors[dataset]
            take = min(count, size - cursor)
            pieces.append(self._permutation(dataset)[cursor:cursor + take])
            count -= take
            self.cursors[dataset] = cursor + take
            if self.cursors[dataset] == size:
                self.cursors[dataset], self.epochs[dataset] = 0, self.epochs[dataset] + 1
        return torch.cat(pieces)

    def state_dict(self) -> dict:
        """Everything a resume needs (plain Python types). The RNG is keyed on (seed, step): no hidden state."""
        return {"step": self.step, "seed": self.seed, "mode": self.mode, "names": list(self.names),
                "sizes": list(self.sizes), "global_batch_size": self.global_batch_size,
                "weights": self._weights.tolist(), "cursors": list(self.cursors), "epochs": list(self.epochs),
                "counts": list(self._example_counts), "batch_counts": list(self._batch_counts)}

    def load_state_dict(self, state: dict) -> None:
        """Restore a state_dict; the next draw is the one an uninterrupted run would have made."""
        for key in ("names", "sizes", "mode", "seed", "global_batch_size"):
            if key not in state:
                raise MosCheckpointError(f"blend state has no {key!r}: not a ReweightableBlend.state_dict()")
            mine = getattr(self, key)
            if state[key] != mine:
                raise MosCheckpointError(f"blend state has {key}={state[key]!r} but this run has {mine!r}; "
                                         "resume with the same datasets, mixing mode, seed and global batch")
        self.step = int(state["step"])
        normalised_weights(state["weights"], len(self.sizes))  # validates; the saved bits are kept as they are
        self._weights = torch.tensor(state["weights"], dtype=torch.float64)
        self.cursors = [int(c) for c in state["cursors"]]
        self.epochs = [int(e) for e in state["epochs"]]
        self._example_counts = [int(c) for c in state["counts"]]
        self._batch_counts = [int(c) for c in state["batch_counts"]]
        self._permutations.clear()


def reward_example_ids(size: int, count: int, seed: int, step: int, dataset_index: int) -> torch.Tensor:
    """[count] int64 example indices of a MoS reward mini-batch (Section 3.2), keyed on (seed, step, "reward",
    dataset_index), independent of the training stream. Distinct indices when count <= size; otherwise whole
    permutations are concatenated (each example appears floor or ceil of count / size times)."""
    if size < 1 or count < 0:
        raise MosValueError(f"reward_example_ids(size={size}, count={count}): need size >= 1 and count >= 0")
    generator = keyed_generator(seed, step, "reward", dataset_index)
    rounds = math.ceil(count / size) if count else 0
    pieces = [torch.randperm(size, generator=generator) for _ in range(max(rounds, 1))]
    return torch.cat(pieces)[:count]
