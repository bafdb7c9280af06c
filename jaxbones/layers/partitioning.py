"""What a model family tells the training system about splitting its parameters.

A family declares ``PartitionRules`` next to its registrations
(``register_model(..., partition_rules=...)``), as it declares its optimiser groups
(``jaxbones/layers/param_groups.py``): pairs ``(regex, logical axes)``. The first regex that
``re.search``-es a parameter's '/'-joined path ('blocks_3/attn/qkv/kernel') gives the logical
name of each of the parameter's trailing dimensions; leading dimensions beyond the rule's
length (the [depth] axis of an ``nn.scan`` stack) get none. Models stay mesh-free: the
training system maps logical names onto mesh axes (``jaxbones.train.sharding``: 'heads' and
'mlp' -> 'tensor') and adds FSDP on top.

The logical names: 'heads' is an attention layer's head dimension (the ``qkv`` output, the
``proj`` input), 'mlp' the hidden units of a transformer MLP (``fc1`` output, ``fc2`` input).
Splitting both over one axis is Megatron-style tensor parallelism: each shard computes its
heads and hidden units and one reduction per sub-layer combines them.
"""

from __future__ import annotations

import re

# ((path regex, (logical name or None per trailing dimension)), ...)
PartitionRules = tuple[tuple[str, tuple[str | None, ...]], ...]


def attention_rules(module: str = "attn") -> PartitionRules:
    """Rules of ``jaxbones.layers.attention.MultiHeadAttention`` at path component ``module``
    (a regex): ``qkv`` [D, 3D] splits its outputs, ``proj`` [D, D] its inputs.

    The fused ``qkv`` output is laid out [q | k | v] with heads contiguous inside each, so a
    contiguous shard of it is not a whole set of heads: XLA regroups it into heads (one
    activation exchange per layer) before the attention itself runs head-parallel."""
    m = f"(^|/){module}/"
    return (
        (m + r"qkv/kernel$", (None, "heads")),
        (m + r"qkv/bias$", ("heads",)),
        (m + r"proj/kernel$", ("heads", None)),
    )


def mlp_rules(module: str = "mlp") -> PartitionRules:
    """Rules of ``jaxbones.layers.mlp.Mlp`` at path component ``module`` (a regex): ``fc1``
    splits its outputs (the hidden units), ``fc2`` its inputs."""
    m = f"(^|/){module}/"
    return (
        (m + r"fc1/kernel$", (None, "mlp")),
        (m + r"fc1/bias$", ("mlp",)),
        (m + r"fc2/kernel$", ("mlp", None)),
    )


TRANSFORMER_RULES: PartitionRules = attention_rules() + mlp_rules()


def logical_axes(rules: PartitionRules, path: str, ndim: int) -> tuple[str | None, ...]:
    """The logical name of each of the ``ndim`` dimensions of the parameter at ``path``
    (None: not named); all None when no rule matches. A rule longer than ``ndim`` is an
    error naming the rule (it was written for another parameter shape)."""
    for pattern, axes in rules:
        if re.search(pattern, path):
            if len(axes) > ndim:
                raise ValueError(
                    f"partition rule {pattern!r} -> {axes} names {len(axes)} dimensions but "
                    f"{path!r} has {ndim}: fix the family's PARTITION_RULES"
                )
            return (None,) * (ndim - len(axes)) + tuple(axes)
    return (None,) * ndim
