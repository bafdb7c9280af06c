"""Stochastic depth and dropout on named RNG streams."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class DropPath(nn.Module):
    """Per-sample stochastic depth (timm ``DropPath``), on the ``'drop_path'`` RNG stream.

    Attributes:
      rate: probability of dropping the residual branch for a sample.
      scale_by_keep: divide kept samples by ``1 - rate`` (timm's default).
    """

    rate: float = 0.0
    scale_by_keep: bool = True

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        if deterministic or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = jax.random.bernoulli(self.make_rng("drop_path"), keep, shape)
        y = x / keep if self.scale_by_keep else x
        return jnp.where(mask, y, jnp.zeros_like(y))


def drop_path_rates(rate: float, depths) -> list[list[float]]:
    """Linear stochastic-depth schedule over all blocks (timm): one list per stage."""
    total = sum(depths)
    flat = [rate * i / max(total - 1, 1) for i in range(total)]
    out, start = [], 0
    for d in depths:
        out.append(flat[start : start + d])
        start += d
    return out
