"""The one attention kernel entry point.

Every attention layer in jaxbones computes ``softmax(q k^T * scale + bias) v`` through
``dot_product_attention`` below, which dispatches to ``jax.nn.dot_product_attention`` with a
selectable ``implementation``: ``None`` (``resolve_implementation``: cuDNN flash attention
where it is known to work, else XLA), ``"xla"`` (portable, used by CPU tests) or ``"cudnn"``
(flash attention on NVIDIA GPUs, bf16/fp16 only).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxbones.layers.linear import Dense
from jaxbones.layers.platform import traced_for_cpu, traced_platform

# timm's ViT init for Linear layers (trunc_normal std 0.02)
_dense_init = nn.initializers.truncated_normal(0.02)

IMPLEMENTATIONS = (None, "xla", "cudnn")


def _on_nvidia_gpu() -> bool:
    """Whether the program being traced runs on this host's GPUs and they are NVIDIA's (an
    AOT compile for another platform, ``compile_target``, does not)."""
    if traced_platform() != "gpu":
        return False
    return "nvidia" in jax.devices()[0].device_kind.lower()


def resolve_implementation(implementation, q, *, bias=None, mask=None, is_causal=False):
    """The kernel behind ``implementation=None``: cuDNN flash attention for bf16/fp16 attention
    with no bias, mask or causal mask on an NVIDIA GPU (the ViT/MAE case, measured on an
    H200: ViT-B/16's train step 1.31x and MAE ViT-L's 1.20x faster than with XLA's attention,
    and the eval logits within bf16 rounding of XLA's; BENCHMARKS.md), else XLA's. Attention
    with a bias or a mask (Swin, SAM, CLIP's text tower) stays on XLA until cuDNN's is measured
    for it; ``"cudnn"`` asks for it explicitly."""
    if implementation is not None:
        return implementation
    plain = bias is None and mask is None and not is_causal
    low_precision = q.dtype in (jnp.bfloat16, jnp.float16)
    head_dim = q.shape[-1]
    if plain and low_precision and head_dim % 8 == 0 and head_dim <= 128 and _on_nvidia_gpu():
        return "cudnn"
    return "xla"


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
      implementation: None (``resolve_implementation``), "xla" or "cudnn".
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"attention implementation {implementation!r} is not one of {IMPLEMENTATIONS}"
        )
    if implementation == "cudnn" and q.dtype not in (jnp.bfloat16, jnp.float16):
        raise ValueError("cuDNN flash attention needs bf16/fp16 inputs; use dtype=jnp.bfloat16")
    if implementation is None:
        implementation = resolve_implementation(None, q, bias=bias, mask=mask, is_causal=is_causal)
        if implementation == "cudnn":
            try:  # GPUs older than cuDNN's flash attention refuse it while tracing
                return dot_product_attention(q, k, v, scale=scale, implementation="cudnn")
            except (NotImplementedError, RuntimeError):
                implementation = "xla"
    if bias is not None:
        bias = bias.astype(q.dtype)
    if implementation == "cudnn" and (q.shape[1] % 2 or k.shape[1] % 2):
        return padded_to_even(q, k, v, bias, mask, scale, is_causal, implementation)
    if implementation == "xla" and traced_for_cpu():
        return heads_major_attention(q, k, v, bias, mask, scale, is_causal)
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


@jax.custom_vjp
def softmax_product(logits, v):
    """``softmax(logits, axis=-1) @ v`` over [..., Lq, Lk] float logits and [..., Lk, D]
    values, normalised after the product: ``exp(logits - max) @ v`` divided by the row sums.
    The division then runs over [Lq, D] instead of [Lq, Lk]. XLA's CPU backend runs the
    attention's forward as one XNNPACK fusion either way, but in this order the second
    product reads the exponentials as they are, with no pass over [Lq, Lk] normalising them
    first (ViT-S/16 attention, batch 8, one layer: forward 8.1-8.6 -> 5.4-5.7 ms; forward + backward 23.4-27.2 -> 22.0-24.1 ms; ViT-B/16 16.1-16.7 ->
    10.8-11.3 ms, Swin-T's first-stage windows 14.8-17.2 -> 11.6 ms). In differentiation
    the forward also keeps the probabilities, and the backward reads them:
    ``dlogits = p (dp - sum(dout out))``, ``dv = p^T dout``. A custom VJP, it has no
    forward-mode derivative, like the other CPU paths."""
    return _softmax_product_fwd(logits, v)[0]


def _softmax_product_fwd(logits, v):
    e = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
    row_sums = jnp.sum(e, axis=-1, keepdims=True)
    out = jnp.einsum("...qk,...kd->...qd", e.astype(v.dtype), v, preferred_element_type=e.dtype)
    out = out / row_sums
    return out.astype(v.dtype), (e / row_sums, v, out)


def _softmax_product_bwd(res, dout):
    probs, v, out = res
    dv = jnp.einsum("...qk,...qd->...kd", probs.astype(v.dtype), dout)
    dprobs = jnp.einsum("...qd,...kd->...qk", dout, v, preferred_element_type=probs.dtype)
    row_dot = jnp.sum(dout.astype(out.dtype) * out, axis=-1, keepdims=True)
    return probs * (dprobs - row_dot), dv


softmax_product.defvjp(_softmax_product_fwd, _softmax_product_bwd)


def heads_major_attention(q, k, v, bias, mask, scale, is_causal):
    """XLA's attention (``jax.nn.dot_product_attention``'s ``"xla"``: float32 logits and
    softmax, masked logits at -0.7 x the dtype's largest value) with the heads moved before
    the tokens first and the scale applied to ``q``, as timm's unfused attention does. On
    XLA's CPU backend the [B, L, H, D] products each copied their operands into that order,
    and scaling the logits made the backward fuse worse: ViT-S/16 attention (batch 8)
    forward 11-14 -> 9 ms, forward + backward 43-50 -> 21-22 ms (torch's CPU flash
    attention: 4.8 + 11.6 ms). The softmax and the second product are ``softmax_product``."""
    head_dim = q.shape[-1]
    scale = head_dim**-0.5 if scale is None else scale
    q, k, v = (jnp.swapaxes(a, 1, 2) for a in (q, k, v))  # [B, H, L, D]
    logits_dtype = jnp.promote_types(q.dtype, jnp.float32)
    logits = jnp.einsum(
        "bhqd,bhkd->bhqk", q * jnp.asarray(scale, q.dtype), k, preferred_element_type=logits_dtype
    )
    if bias is not None:
        logits = (logits + bias).astype(logits_dtype)
    if is_causal:
        causal = jnp.tril(jnp.ones(logits.shape[-2:], bool))
        mask = causal if mask is None else jnp.logical_and(mask, causal)
    if mask is not None:
        large_negative = jnp.asarray(-0.7 * float(jnp.finfo(logits_dtype).max), logits_dtype)
        logits = jnp.where(mask, logits, large_negative)
    return jnp.swapaxes(softmax_product(logits.astype(jnp.float32), v), 1, 2)


def padded_to_even(q, k, v, bias, mask, scale, is_causal, implementation):
    """Attention over sequences padded to even lengths, the padding excluded by sequence
    lengths and sliced off the output: cuDNN's flash-attention training kernels refuse odd
    lengths (ViT's 197 tokens), and the padded keys get no weight, so the result is that of the
    unpadded sequences."""
    (b, lq), lk = q.shape[:2], k.shape[1]
    pq, pk = lq % 2, lk % 2

    def pad(a, n, axis):
        widths = [(0, 0)] * a.ndim
        widths[axis] = (0, n)
        return jnp.pad(a, widths)

    if bias is not None:
        bias = pad(pad(jnp.broadcast_to(bias, (*bias.shape[:-2], lq, lk)), pq, -2), pk, -1)
    if mask is not None:
        mask = pad(pad(jnp.broadcast_to(mask, (*mask.shape[:-2], lq, lk)), pq, -2), pk, -1)
    out = jax.nn.dot_product_attention(
        pad(q, pq, 1),
        pad(k, pk, 1),
        pad(v, pk, 1),
        bias=bias,
        mask=mask,
        scale=scale,
        is_causal=is_causal,
        query_seq_lengths=jnp.full((b,), lq, jnp.int32),
        key_value_seq_lengths=jnp.full((b,), lk, jnp.int32),
        implementation=implementation,
    )
    return out[:, :lq]


class MultiHeadAttention(nn.Module):
    """Self-attention with a fused ``qkv`` projection (timm ``Attention``).

    The ``qkv`` Dense has 3 * dim outputs in PyTorch's row order: [q, k, v], inside each
    [head0, head1, ...] with ``head_dim`` contiguous, so timm/MAE ``attn.qkv.weight`` converts
    with a plain transpose. The kernel is ``dot_product_attention`` (one entry point); when
    attention dropout is active (training with ``attn_drop > 0``) the probabilities are formed
    explicitly so they can be dropped, as timm does.

    Attributes:
      num_heads: attention heads (dim must divide evenly).
      qkv_bias: bias on ``qkv``; proj_bias: bias on ``proj``.
      attn_drop: dropout on the attention probabilities; proj_drop: dropout after ``proj``.
      implementation: kernel for ``dot_product_attention`` (None, "xla", "cudnn").
      dtype, param_dtype: compute and parameter dtypes.
    """

    num_heads: int
    qkv_bias: bool = True
    proj_bias: bool = True
    attn_drop: float = 0.0
    proj_drop: float = 0.0
    implementation: str | None = None
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, deterministic: bool = True, bias=None, mask=None):
        b, n, c = x.shape
        if c % self.num_heads:
            raise ValueError(f"attention dim {c} is not divisible by num_heads={self.num_heads}")
        head_dim = c // self.num_heads
        dense = functools.partial(
            Dense, dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=_dense_init
        )
        qkv = dense(3 * c, use_bias=self.qkv_bias, name="qkv")(x)
        qkv = qkv.reshape(b, n, 3, self.num_heads, head_dim)  # [B, L, 3, H, D] (torch rows)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # each [B, L, H, D]
        if self.attn_drop > 0.0 and not deterministic:
            logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) * head_dim**-0.5
            if bias is not None:
                logits = logits + bias.astype(jnp.float32)
            if mask is not None:
                logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
            probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
            probs = nn.Dropout(self.attn_drop)(probs, deterministic=False)
            out = jnp.einsum("bhqk,bkhd->bqhd", probs, v)
        else:
            out = dot_product_attention(
                q, k, v, bias=bias, mask=mask, implementation=self.implementation
            )
        out = out.reshape(b, n, c)  # [B, L, H * D], heads contiguous as in torch
        out = dense(c, use_bias=self.proj_bias, name="proj")(out)
        return nn.Dropout(self.proj_drop)(out, deterministic)
