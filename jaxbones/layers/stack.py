"""Remat policies by name, and the parameter (un)stacking that converts between the unrolled
layout (``blocks_0``, ``blocks_1``, ...) and the scanned layout (one ``blocks`` subtree whose
leaves carry a leading [depth] axis, as ``nn.scan`` creates)."""

from __future__ import annotations

import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# Named rematerialisation policies (jax.checkpoint_policies), chosen by config string.
REMAT_POLICIES: dict[str, Any] = {
    "none": None,  # no remat: keep every activation (fastest, most memory)
    "full": jax.checkpoint_policies.nothing_saveable,  # recompute everything in backward
    "dots": jax.checkpoint_policies.checkpoint_dots,  # keep matmul outputs
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "everything": jax.checkpoint_policies.everything_saveable,
}


def remat(block_cls: type[nn.Module], policy: str, static_argnums=()) -> type[nn.Module]:
    """``block_cls`` wrapped in ``nn.remat`` with the named policy (``'none'``: unchanged).

    ``static_argnums`` counts ``self`` as 0 (e.g. ``(2,)`` for a ``deterministic`` flag
    passed as the second call argument)."""
    if policy not in REMAT_POLICIES:
        raise ValueError(f"unknown remat policy {policy!r}; valid: {', '.join(REMAT_POLICIES)}")
    if policy == "none":
        return block_cls
    return nn.remat(block_cls, policy=REMAT_POLICIES[policy], static_argnums=static_argnums)


def stack_blocks(tree: dict, prefix: str, depth: int, stacked_name: str | None = None) -> dict:
    """Unrolled -> scanned: ``{prefix}_0 .. {prefix}_{depth-1}`` become one ``stacked_name``
    (default ``prefix``) subtree with leaves stacked on a new leading axis. Applies to every
    collection level given (call it on ``variables['params']`` etc.)."""
    out = {k: v for k, v in tree.items() if not re.fullmatch(rf"{re.escape(prefix)}_\d+", k)}
    blocks = [tree[f"{prefix}_{i}"] for i in range(depth)]
    out[stacked_name or prefix] = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *blocks)
    return out


def unstack_blocks(tree: dict, prefix: str, depth: int, stacked_name: str | None = None) -> dict:
    """Scanned -> unrolled: the inverse of ``stack_blocks``."""
    out = {k: v for k, v in tree.items() if k != (stacked_name or prefix)}
    stacked = tree[stacked_name or prefix]
    for i in range(depth):
        out[f"{prefix}_{i}"] = jax.tree_util.tree_map(lambda x, i=i: x[i], stacked)
    return out
