"""Shared helper for the ``features_only`` / ``out_indices`` option of every backbone."""

from __future__ import annotations

from collections.abc import Sequence


def select_levels(levels: list, out_indices: Sequence[int] | None) -> list:
    """The feature levels (or ``feature_info`` dicts) picked by ``out_indices`` (None: all);
    an index out of range fails naming the valid ones."""
    n = len(levels)
    if out_indices is None:
        return list(levels)
    for i in out_indices:
        if not -n <= i < n:
            raise ValueError(f"out_indices {tuple(out_indices)} out of range; valid 0..{n - 1}")
    return [levels[i] for i in out_indices]
