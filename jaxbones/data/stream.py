"""The training data stream: global batch ``s`` is a function of (seed, s) alone.

Every epoch has one global order of the records, a permutation drawn from (seed, epoch).
Global batch ``s`` is the ``s % steps_per_epoch``-th run of ``global_batch_size`` records of
epoch ``s // steps_per_epoch``'s order (the remainder of an epoch is dropped, so every epoch
has the same number of steps); process ``p`` of ``P`` reads only the contiguous share
``[p * b, (p + 1) * b)`` of it, ``b = global_batch_size / P``. Random augmentation of a record
is seeded by (seed, its global stream position), so neither the batches nor their
augmentation depend on how many processes read them.

The stream's state is its next global step (with the seed, global batch size and dataset
size it was built with, to refuse a resume that would mean something else), identical on
every process: a checkpoint written by N processes resumes on M.

grain does the reading: a ``MapDataset`` whose element ``k`` is this process's k-th example
of the stream, read and augmented in grain's read threads (``to_iter_dataset``) and batched,
with optional worker processes (``mp_prefetch``). grain's ``IndexSampler`` cannot express
this order (it shuffles each process's own slice, so the global batch depends on the
process count), hence the custom index source.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import grain
import numpy as np


@dataclasses.dataclass(frozen=True)
class StreamSpec:
    """Shape of a stream: what a resumed checkpoint must agree with."""

    num_records: int
    global_batch_size: int
    seed: int

    @property
    def steps_per_epoch(self) -> int:
        return self.num_records // self.global_batch_size


@functools.lru_cache(maxsize=4)
def epoch_order(num_records: int, seed: int, epoch: int) -> np.ndarray:
    """The global order of the records in ``epoch`` (a permutation of their indices)."""
    return np.random.default_rng([seed, epoch, 0x6A62]).permutation(num_records)


def global_batch_indices(spec: StreamSpec, step: int) -> np.ndarray:
    """Record indices of global batch ``step`` (all processes' shares, in order)."""
    epoch, i = divmod(step, spec.steps_per_epoch)
    g = spec.global_batch_size
    return epoch_order(spec.num_records, spec.seed, epoch)[i * g : (i + 1) * g]


class _ShareSource:
    """Element k: this process's k-th example from ``start_step`` on, read from ``source``:
    ``{"record": record, "position": global stream position}``. Picklable for workers."""

    def __init__(self, source, spec: StreamSpec, pi: int, pc: int, start_step: int, steps: int):
        self.source, self.spec, self.start_step, self.steps = source, spec, start_step, steps
        self.local = spec.global_batch_size // pc
        self.offset = pi * self.local

    def __len__(self) -> int:
        return self.steps * self.local

    def __getitem__(self, k: int) -> dict[str, Any]:
        step, j = divmod(int(k), self.local)
        step += self.start_step
        within = self.offset + j
        epoch, i = divmod(step, self.spec.steps_per_epoch)
        g = self.spec.global_batch_size
        order = epoch_order(self.spec.num_records, self.spec.seed, epoch)
        record = self.source[int(order[i * g + within])]
        return {"record": record, "position": step * g + within}


@dataclasses.dataclass
class _AugmentAt(grain.transforms.Map):
    """Applies a ``RandomMap`` with a Generator seeded by (seed, global position)."""

    transform: grain.transforms.RandomMap
    seed: int

    def map(self, element):
        rng = np.random.default_rng([self.seed, int(element["position"])])
        return self.transform.random_map(element["record"], rng)


class TrainStream:
    """This process's batches of the global stream (see the module docstring).

    Iterating yields batches of ``global_batch_size // process_count`` examples from
    ``step`` on; ``get_state()`` / ``set_state()`` save and restore the global position.
    """

    def __init__(
        self,
        source,
        transform: grain.transforms.RandomMap,
        *,
        global_batch_size: int,
        seed: int,
        process_index: int,
        process_count: int,
        num_epochs: int | None = None,
        read_options: grain.ReadOptions | None = None,
        worker_count: int = 0,
        prefetch: int = 2,
    ):
        self.spec = StreamSpec(len(source), int(global_batch_size), int(seed))
        if self.spec.steps_per_epoch < 1:
            raise ValueError(
                f"{len(source)} training examples are fewer than one global batch of "
                f"{global_batch_size}; lower global_batch_size"
            )
        self.source, self.transform = source, transform
        self.pi, self.pc = process_index, process_count
        self.num_steps = None if num_epochs is None else num_epochs * self.spec.steps_per_epoch
        self.read_options, self.worker_count, self.prefetch = read_options, worker_count, prefetch
        self.step = 0
        self._it = None

    def get_state(self) -> dict[str, int]:
        return {"step": self.step, **dataclasses.asdict(self.spec)}

    def set_state(self, state: dict[str, Any]) -> None:
        saved = StreamSpec(
            int(state["num_records"]), int(state["global_batch_size"]), int(state["seed"])
        )
        if saved != self.spec:
            diff = ", ".join(
                f"{f.name} {getattr(saved, f.name)} in the checkpoint, {getattr(self.spec, f.name)} now"
                for f in dataclasses.fields(StreamSpec)
                if getattr(saved, f.name) != getattr(self.spec, f.name)
            )
            raise ValueError(
                f"the checkpoint's data stream does not match this run's ({diff}); resume with "
                "the same dataset, global_batch_size and seed, or start a new workdir"
            )
        self.step = int(state["step"])
        self._it = None

    def _build(self):
        # A stream without an epoch limit is long enough for any run (2**40 examples).
        steps = (self.num_steps - self.step) if self.num_steps is not None else 2**40
        share = _ShareSource(self.source, self.spec, self.pi, self.pc, self.step, max(steps, 0))
        local = share.local
        ds = grain.MapDataset.source(share).map(_AugmentAt(self.transform, self.spec.seed))
        it = ds.to_iter_dataset(self.read_options).batch(local, drop_remainder=True)
        if self.worker_count > 0:
            it = it.mp_prefetch(
                grain.MultiprocessingOptions(
                    num_workers=self.worker_count, per_worker_buffer_size=max(1, self.prefetch)
                )
            )
        return iter(it)

    def __iter__(self):
        return self

    def __next__(self):
        if self._it is None:
            self._it = self._build()
        batch = next(self._it)
        self.step += 1
        return batch
