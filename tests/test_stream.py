"""The training stream is a function of (seed, global step) alone: the same global batches,
with the same augmentation, on 1, 2 or 4 processes; resumable on another process count."""

from __future__ import annotations

import dataclasses

import grain
import numpy as np
import pytest

from jaxbones import data
from jaxbones.data.stream import StreamSpec, TrainStream, global_batch_indices


@dataclasses.dataclass
class _Tag(grain.transforms.RandomMap):
    """Record index plus one random draw: shows which record and which augmentation."""

    def random_map(self, element, rng):
        return {"index": np.int64(element), "draw": np.float64(rng.random())}


N, GBS = 103, 12  # 8 steps per epoch, 7 records dropped each epoch


def _stream(pc, pi, seed=0, **kw):
    source = list(range(N))
    return TrainStream(
        source, _Tag(), global_batch_size=GBS, seed=seed, process_index=pi, process_count=pc, **kw
    )


def _global_batches(pc, steps, state=None):
    streams = [_stream(pc, p) for p in range(pc)]
    if state is not None:
        for s in streams:
            s.set_state(state)
    out = []
    for _ in range(steps):
        shares = [next(s) for s in streams]
        out.append({k: np.concatenate([b[k] for b in shares]) for k in shares[0]})
    return out, streams[0].get_state()


@pytest.mark.parametrize("pc", [2, 4])
def test_global_batches_do_not_depend_on_the_process_count(pc):
    ref, _ = _global_batches(1, 20)
    got, _ = _global_batches(pc, 20)
    for s, (a, b) in enumerate(zip(ref, got, strict=True)):
        np.testing.assert_array_equal(a["index"], b["index"])
        np.testing.assert_array_equal(a["draw"], b["draw"])  # same augmentation randomness
        np.testing.assert_array_equal(a["index"], global_batch_indices(StreamSpec(N, GBS, 0), s))


def test_each_epoch_visits_every_record_once():
    spec = StreamSpec(N, GBS, 0)
    batches, _ = _global_batches(2, 3 * spec.steps_per_epoch)
    per_epoch = spec.steps_per_epoch * GBS
    idx = np.concatenate([b["index"] for b in batches])
    for e in range(3):
        seen = idx[e * per_epoch : (e + 1) * per_epoch]
        assert len(set(seen.tolist())) == per_epoch == N - N % GBS  # no repeats in an epoch
    assert not np.array_equal(idx[:per_epoch], idx[per_epoch : 2 * per_epoch])  # reshuffled


@pytest.mark.parametrize(("before", "after"), [(2, 1), (1, 2), (4, 2)])
def test_resume_on_another_process_count(before, after):
    ref, _ = _global_batches(1, 13)
    _, state = _global_batches(before, 5)
    assert state["step"] == 5
    got, _ = _global_batches(after, 8, state)
    for a, b in zip(ref[5:], got, strict=True):
        np.testing.assert_array_equal(a["index"], b["index"])
        np.testing.assert_array_equal(a["draw"], b["draw"])


def test_resume_with_another_stream_is_refused():
    _, state = _global_batches(1, 2)
    other = _stream(1, 0, seed=1)
    with pytest.raises(ValueError, match="seed 0 in the checkpoint, 1 now.*same dataset"):
        other.set_state(state)


def test_epoch_limit_and_too_small_dataset():
    s = _stream(1, 0, num_epochs=1)
    assert len(list(s)) == N // GBS
    with pytest.raises(ValueError, match="fewer than one global batch"):
        TrainStream([0, 1], _Tag(), global_batch_size=4, seed=0, process_index=0, process_count=1)


def test_digits_pipeline_is_topology_free(tmp_path):
    data_dir = str(tmp_path)
    data.ensure_local_dataset("digits", data_dir)
    kw = {"global_batch_size": 8, "image_size": 16, "data_dir": data_dir, "seed": 3}
    one = data.make_train_iterator("digits", process_index=0, process_count=1, **kw)
    two = [
        data.make_train_iterator("digits", process_index=p, process_count=2, **kw) for p in (0, 1)
    ]
    for _ in range(3):
        a = next(one)
        b = [next(t) for t in two]
        np.testing.assert_array_equal(a["image"], np.concatenate([x["image"] for x in b]))
        np.testing.assert_array_equal(a["label"], np.concatenate([x["label"] for x in b]))
