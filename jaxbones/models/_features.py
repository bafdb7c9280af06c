"""Shared helper for the ``features_only`` / ``out_indices`` option of every backbone."""

from __future__ import annotations

from collections.abc import Sequence

from jaxbones.layers.linear import Dense


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


def classifier_head(mod, x, train: bool, name: str):
    """The CNN classifier tail: global pool -> dropout -> Dense(``num_classes``) named ``name``.

    Call it inside ``mod``'s compact ``__call__`` (the Dense becomes ``mod``'s submodule, so
    parameter names are unchanged); ``num_classes=0`` returns the pooled features.
    """
    import flax.linen as nn

    from jaxbones.layers import global_pool

    x = global_pool(x, mod.global_pool)
    if not mod.num_classes:
        return x
    x = nn.Dropout(mod.drop_rate)(x, deterministic=not train)
    return Dense(mod.num_classes, dtype=mod.dtype, param_dtype=mod.param_dtype, name=name)(x)
