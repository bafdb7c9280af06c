"""Mixup / CutMix on device, inside the jitted train step (timm `Mixup`, mode='batch').

One draw per global batch, keyed by the step RNG: with probability `prob` the batch is
mixed with its reverse (`x[::-1]`), by CutMix with probability `switch_prob` (when both
alphas > 0) else Mixup, lam ~ Beta(alpha, alpha). CutMix pastes a box of side sqrt(1 - lam)
centred uniformly (clipped at the border) and corrects lam to the pasted area. Targets are
label-smoothed one-hots mixed with the same lam. Everything is global-array arithmetic, so
the result does not depend on how the batch axis is sharded.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["mixup_cutmix", "sample_beta", "smooth_one_hot"]


def smooth_one_hot(labels, num_classes: int, smoothing: float = 0.0):
    """float32 [B, K]: 1 - smoothing + smoothing / K on the label, smoothing / K elsewhere."""
    off = smoothing / num_classes
    return jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) * (1.0 - smoothing) + off


def _log_gamma_sample(key, a, candidates: int = 16):
    """log of one Gamma(a) draw, a > 0, without a while loop (cheap to compile).

    Marsaglia & Tsang (2000) for shape a + 1 >= 1 with `candidates` proposals evaluated at
    once, the first accepted one kept (acceptance >= 95% per proposal: all 16 fail with
    probability < 1e-20), then the boost Gamma(a) = Gamma(a + 1) * U^(1/a), in logs so
    small shapes do not underflow. (jax.random.gamma's rejection loop costs ~7 s of XLA
    compile on CPU, paid by every train step that mixes.)
    """
    k_x, k_u, k_boost = jax.random.split(key, 3)
    d = a + 1.0 - 1.0 / 3.0
    c = 1.0 / jnp.sqrt(9.0 * d)
    x = jax.random.normal(k_x, (candidates,))
    u = jax.random.uniform(k_u, (candidates,), minval=1e-12)
    v = (1.0 + c * x) ** 3
    safe_v = jnp.where(v > 0, v, 1.0)
    ok = (v > 0) & (jnp.log(u) < 0.5 * x**2 + d - d * safe_v + d * jnp.log(safe_v))
    log_g = jnp.log(d) + jnp.log(safe_v[jnp.argmax(ok)])  # first accepted proposal
    return log_g + jnp.log(jax.random.uniform(k_boost, minval=1e-12)) / a


def sample_beta(key, alpha):
    """One Beta(alpha, alpha) draw (float32 scalar): G1 / (G1 + G2), Gi ~ Gamma(alpha)."""
    k1, k2 = jax.random.split(key)
    alpha = jnp.asarray(alpha, jnp.float32)
    return jax.nn.sigmoid(_log_gamma_sample(k1, alpha) - _log_gamma_sample(k2, alpha))


def mixup_cutmix(
    rng,
    images,
    labels,
    *,
    num_classes: int,
    mixup_alpha: float = 0.8,
    cutmix_alpha: float = 1.0,
    prob: float = 1.0,
    switch_prob: float = 0.5,
    label_smoothing: float = 0.1,
):
    """Mixed images [B, H, W, C] (same dtype) and soft labels float32 [B, num_classes]."""
    # alphas, prob, switch_prob and smoothing may be traced values (one compiled step serves
    # every setting); an alpha <= 0 disables that mix.
    mixup_alpha, cutmix_alpha = jnp.asarray(mixup_alpha), jnp.asarray(cutmix_alpha)
    k_apply, k_switch, k_lam, k_cy, k_cx = jax.random.split(rng, 5)
    apply = (jax.random.uniform(k_apply) < prob) & ((mixup_alpha > 0) | (cutmix_alpha > 0))
    use_cutmix = jnp.where(
        (mixup_alpha > 0) & (cutmix_alpha > 0),
        jax.random.uniform(k_switch) < switch_prob,
        cutmix_alpha > 0,
    )
    alpha = jnp.maximum(jnp.where(use_cutmix, cutmix_alpha, mixup_alpha), 1e-3)
    lam = sample_beta(k_lam, alpha)

    _, height, width, _ = images.shape
    # CutMix box (timm rand_bbox): sides int(H * sqrt(1 - lam)), centre uniform in the image
    ratio = jnp.sqrt(1.0 - lam)
    cut_h = jnp.floor(height * ratio).astype(jnp.int32)
    cut_w = jnp.floor(width * ratio).astype(jnp.int32)
    cy = jax.random.randint(k_cy, (), 0, height)
    cx = jax.random.randint(k_cx, (), 0, width)
    y0, y1 = jnp.clip(cy - cut_h // 2, 0, height), jnp.clip(cy + cut_h // 2, 0, height)
    x0, x1 = jnp.clip(cx - cut_w // 2, 0, width), jnp.clip(cx + cut_w // 2, 0, width)
    lam_box = 1.0 - ((y1 - y0) * (x1 - x0)).astype(jnp.float32) / (height * width)
    ys, xs = jnp.arange(height)[:, None], jnp.arange(width)[None, :]
    box = (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)  # [H, W]

    flipped = images[::-1]
    lam_img = lam.astype(images.dtype)
    mixed = jnp.where(
        use_cutmix,
        jnp.where(box[None, :, :, None], flipped, images),
        images * lam_img + flipped * (1 - lam_img),
    )
    out = jnp.where(apply, mixed, images)
    lam = jnp.where(apply, jnp.where(use_cutmix, lam_box, lam), 1.0)
    y = smooth_one_hot(labels, num_classes, label_smoothing)
    return out, y * lam + y[::-1] * (1.0 - lam)
