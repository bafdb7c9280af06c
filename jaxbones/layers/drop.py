"""Stochastic depth on the ``'drop_path'`` RNG stream, and its per-block schedule."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def drop_path(
    module: nn.Module,
    x,
    rate,
    deterministic: bool,
    *,
    key=None,
    branch: int = 0,
    scale_by_keep: bool = True,
):
    """Per-sample stochastic depth (timm ``drop_path``): each sample of ``x`` is zeroed with
    probability ``rate``; with ``scale_by_keep`` the kept samples are divided by ``1 - rate``.

    Args:
      module: the calling module; its ``'drop_path'`` RNG stream gives the mask when no
        ``key`` is passed.
      x: [B, ...]; one keep/drop decision per sample.
      rate: a python float, or a traced scalar (a scanned block's rate under ``nn.scan``).
      deterministic: return ``x`` unchanged (evaluation).
      key: a PRNG key handed to the block (``block_stack`` gives each block one, so scanned
        and unrolled stacks draw the same masks); ``branch`` is folded into it, so the
        residual branches of one block draw independent masks from one key.

    At ``rate`` 1 every sample is dropped: the output and its gradient are 0 (the kept-sample
    scale ``1 / keep`` is taken as 0 where ``keep`` is 0, not inf, which would give NaN
    gradients through ``0 * inf``).
    """
    if deterministic or (isinstance(rate, (int, float)) and rate == 0.0):
        return x
    keep = 1.0 - jnp.asarray(rate, jnp.float32)
    key = module.make_rng("drop_path") if key is None else jax.random.fold_in(key, branch)
    mask = jax.random.bernoulli(key, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    kept_scale = 1.0 / jnp.where(keep > 0, keep, 1.0) if scale_by_keep else 1.0
    return x * jnp.where(mask, kept_scale, 0.0).astype(x.dtype)


class DropPath(nn.Module):
    """``drop_path`` as a layer, on the ``'drop_path'`` RNG stream.

    Attributes:
      rate: probability of dropping the residual branch for a sample.
      scale_by_keep: divide kept samples by ``1 - rate`` (timm's default).
    """

    rate: float = 0.0
    scale_by_keep: bool = True

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        return drop_path(self, x, self.rate, deterministic, scale_by_keep=self.scale_by_keep)


def drop_path_rates(rate: float, depths) -> list[list[float]]:
    """Linear stochastic-depth schedule over all blocks (timm): one list per stage."""
    total = sum(depths)
    flat = [rate * i / max(total - 1, 1) for i in range(total)]
    out, start = [], 0
    for d in depths:
        out.append(flat[start : start + d])
        start += d
    return out
