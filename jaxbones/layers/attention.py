"""The one attention kernel entry point.

Every attention layer in jaxbones computes ``softmax(q k^T * scale + bias) v`` through
``dot_product_attention`` below, which dispatches to ``jax.nn.dot_product_attention`` with a
selectable ``implementation``: ``None`` (XLA picks), ``"xla"`` (portable, used by CPU tests)
or ``"cudnn"`` (flash attention on NVIDIA GPUs, bf16/fp16 only).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

IMPLEMENTATIONS = (None, "xla", "cudnn")


def dot_product_attention(
    q,
    k,
    v,
    *,
    bias=None,
    mask=None,
    scale: float | None = None,
    is_causal: bool = False,
    implementation: str | None = None,
):
    """Multi-head attention on [B, L, H, D] inputs; returns [B, L, H, D].

    Args:
      q, k, v: [B, Lq, H, D], [B, Lk, H, D], [B, Lk, H, D].
      bias: additive logits bias broadcastable to [B, H, Lq, Lk] (Swin's relative position
        bias and shift mask, SAM's decomposed relative positions).
      mask: boolean, broadcastable to [B, H, Lq, Lk]; False positions are excluded.
      scale: logits scale (default ``D ** -0.5``).
      is_causal: causal mask (CLIP's text tower).
      implementation: None, "xla" or "cudnn".
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"attention implementation {implementation!r} is not one of {IMPLEMENTATIONS}"
        )
    if implementation == "cudnn" and q.dtype not in (jnp.bfloat16, jnp.float16):
        raise ValueError("cuDNN flash attention needs bf16/fp16 inputs; use dtype=jnp.bfloat16")
    if bias is not None:
        bias = bias.astype(q.dtype)
    return jax.nn.dot_product_attention(
        q,
        k,
        v,
        bias=bias,
        mask=mask,
        scale=scale,
        is_causal=is_causal,
        implementation=implementation,
    )
