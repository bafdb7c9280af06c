"""Pictures of a run: MAE reconstructions.

``save_mae_reconstruction(model, variables, images, path, mean, std)`` writes a PNG grid
with one row per image: original | masked input | reconstruction | reconstruction with the
visible patches pasted back (as the MAE paper's figures), after undoing the normalisation.
"""

from __future__ import annotations

import jax
import numpy as np


def _unpatchify(x, p, h, w, c):
    # [B, L, p*p*c] -> [B, h*p, w*p, c] (row-major patches, as the patch embedding)
    b = x.shape[0]
    x = x.reshape(b, h, w, p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * p, w * p, c)


def save_mae_reconstruction(model, variables, images, path, mean, std, seed=0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = np.asarray(images[:4], np.float32)
    # one compiled program: applied eagerly, each of the model's primitives (over a thousand
    # for a small ViT) compiles on its own
    apply = jax.jit(lambda v, x, key: model.apply(v, x, train=False, rngs={"mask": key}))
    loss, pred, mask = apply(variables, images, jax.random.PRNGKey(seed))
    pred, mask = np.asarray(pred, np.float32), np.asarray(mask, np.float32)
    b, hh, ww, c = images.shape
    p = model.patch_size
    gh, gw = hh // p, ww // p
    if getattr(model, "norm_pix_loss", False):
        # predictions are in per-patch normalised units: use the target patch statistics
        tgt = images.reshape(b, gh, p, gw, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, gh * gw, -1)
        mu, var = tgt.mean(-1, keepdims=True), tgt.var(-1, keepdims=True, ddof=1)
        pred = pred * np.sqrt(var + 1e-6) + mu
    rec = _unpatchify(pred, p, gh, gw, c)
    m = _unpatchify(np.repeat(mask[..., None], p * p * c, -1), p, gh, gw, c)
    cols = [images, images * (1 - m), rec, images * (1 - m) + rec * m]
    mean, std = np.asarray(mean)[:c], np.asarray(std)[:c]
    fig, axes = plt.subplots(b, 4, figsize=(8, 2 * b), squeeze=False)
    for i in range(b):
        for j, (col, title) in enumerate(
            zip(
                cols,
                ["original", "masked", "reconstruction", "visible + reconstruction"],
                strict=True,
            )
        ):
            img = np.clip(col[i] * std + mean, 0, 1)
            axes[i, j].imshow(img.squeeze(-1) if c == 1 else img, cmap="gray" if c == 1 else None)
            axes[i, j].axis("off")
            if i == 0:
                axes[i, j].set_title(title, fontsize=8)
    fig.suptitle(f"MAE reconstruction (loss {float(loss):.4f})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
