"""The CLIP contrastive (InfoNCE) loss over the global batch.

``clip_loss(image_features, text_features, logit_scale)``: logits = scale * I @ T.T over the
whole batch; the loss is the mean of the image->text and text->image cross-entropies with the
diagonal as targets (open_clip ``ClipLoss``). Under ``jit`` with the features sharded over a
mesh's batch axes ('data', 'fsdp'), the [N, N] similarity matrix covers the *global* batch: XLA all-gathers the
operands, exactly as open_clip's ``gather_features`` does across ranks.

``clip_loss_local(mesh)``: the same value with open_clip's ``local_loss=True`` layout under
``shard_map``: each device scores its local images against all (gathered) texts and its local
texts against all images, so it holds an [N/d, N] block instead of [N, N]; the per-device
means are averaged. Gradients flow through the gathers (open_clip ``gather_with_grad``).
All arithmetic is float32.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from jaxbones.train.sharding import BATCH_AXES


def _xent_diag(logits, offset=0):
    """Mean cross-entropy of rows of ``logits`` [n, N] against targets offset + arange(n)."""
    n = logits.shape[0]
    targets = offset + jnp.arange(n)
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, targets[:, None], axis=-1))


def clip_logits(image_features, text_features, logit_scale, logit_bias=None):
    """(logits_per_image [N, N], logits_per_text [N, N]) in float32."""
    img = image_features.astype(jnp.float32)
    txt = text_features.astype(jnp.float32)
    logits = jnp.asarray(logit_scale, jnp.float32) * img @ txt.T
    if logit_bias is not None:
        logits = logits + logit_bias
    return logits, logits.T


def clip_loss(image_features, text_features, logit_scale, logit_bias=None):
    """Symmetric InfoNCE over the global batch: (CE(I->T) + CE(T->I)) / 2.

    Args:
      image_features, text_features: [N, D] (L2-normalised, as CLIP's forward returns them).
      logit_scale: the *exponentiated* scale (CLIP returns ``exp(logit_scale)``).
    """
    per_image, per_text = clip_logits(image_features, text_features, logit_scale, logit_bias)
    return (_xent_diag(per_image) + _xent_diag(per_text)) / 2


def clip_loss_local(mesh, axis: str | tuple[str, ...] = BATCH_AXES):
    """``(image_features, text_features, logit_scale) -> loss`` computed per device with
    ``shard_map`` (open_clip ``local_loss=True``); equal to ``clip_loss`` on the global batch
    when the batch is split evenly over ``axis``."""

    def local(img, txt, scale):
        img, txt = img.astype(jnp.float32), txt.astype(jnp.float32)
        all_img = jax.lax.all_gather(img, axis, tiled=True)  # [N, D]
        all_txt = jax.lax.all_gather(txt, axis, tiled=True)
        offset = jax.lax.axis_index(axis) * img.shape[0]  # this device's rows in the batch
        per_image = scale * img @ all_txt.T  # [N/d, N]
        per_text = scale * txt @ all_img.T
        loss = (_xent_diag(per_image, offset) + _xent_diag(per_text, offset)) / 2
        return jax.lax.pmean(loss, axis)

    fn = jax.shard_map(local, mesh=mesh, in_specs=(P(axis), P(axis), P()), out_specs=P())

    @functools.wraps(clip_loss)
    def loss(image_features, text_features, logit_scale):
        return fn(image_features, text_features, jnp.asarray(logit_scale, jnp.float32))

    return loss
