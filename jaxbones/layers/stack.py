"""Stacks of blocks, unrolled or under ``nn.scan`` (``block_stack``), remat policies by name,
and the variable restacking that converts between the two layouts: unrolled blocks are
submodules ``blocks_0``, ``blocks_1``, ...; scanned ones are one ``blocks`` subtree whose
leaves carry a leading [depth] axis (``stack_blocks``, ``unstack_blocks``, ``restack``)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxbones.layers.platform import traced_for_cpu

# Named rematerialisation policies (jax.checkpoint_policies), chosen by config string.
REMAT_POLICIES: dict[str, Any] = {
    "none": None,  # no remat: keep every activation (fastest, most memory)
    "full": jax.checkpoint_policies.nothing_saveable,  # recompute everything in backward
    "dots": jax.checkpoint_policies.checkpoint_dots,  # keep matmul outputs
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "everything": jax.checkpoint_policies.everything_saveable,
}


def residual_dtype(dtype, param_dtype):
    """The dtype of a residual stream: the wider of the compute and the parameter dtype.

    Under a bfloat16 compute dtype with float32 parameters the stream stays float32 and each
    block's bfloat16 branch is added to it without rounding the sum, as under
    ``torch.autocast`` (where adding the float32 ``pos_embed`` promotes the stream); a
    bfloat16 stream rounds every residual sum, the larger of the two causes (with a bfloat16
    GELU) that put ViT-B/16's bf16 logits 1.5x further from float32 than autocast's (README,
    Parity). Float32 models are unchanged."""
    return jnp.promote_types(dtype, param_dtype)


def _stored(x):
    # XLA's CPU pipeline drops optimization barriers before fusion, but a conditional's operand
    # is a stored buffer. Both branches return x wherever it is finite (x + 0 * x == x); only
    # an infinite entry becomes NaN, and only when the first entry is not finite.
    if x.size == 0:
        return x
    ok = jnp.isfinite(x.reshape(-1)[0])
    return jax.lax.cond(ok, lambda v: v, lambda v: v + 0 * v, x)


@jax.custom_vjp
def materialize(x):
    """Identity that XLA must store, forward and backward, instead of recomputing it inside
    every fusion that reads it.

    Along a residual stack the stream (forward) and its gradient (backward) are chains of
    elementwise sums, one term per block. XLA's CPU fusion duplicates such chains into each
    consumer, so every block recomputes the stream from the stage's first block on: quadratic
    in depth. ViT-S/16's backward had fusions of 229 operands (a third of its train step);
    ResNet-50's third stage recomputed up to six BatchNorm-add-ReLU links per consumer."""
    return _stored(x)


def _materialize_fwd(x):
    return _stored(x), None


def _materialize_bwd(_, g):
    return (_stored(g),)


materialize.defvjp(_materialize_fwd, _materialize_bwd)


def remat(block_cls: type[nn.Module], policy: str, static_argnums=()) -> type[nn.Module]:
    """``block_cls`` wrapped in ``nn.remat`` with the named policy (``'none'``: unchanged).

    ``static_argnums`` counts ``self`` as 0 (e.g. ``(2,)`` for a ``deterministic`` flag
    passed as the second call argument)."""
    if policy not in REMAT_POLICIES:
        raise ValueError(f"unknown remat policy {policy!r}; valid: {', '.join(REMAT_POLICIES)}")
    if policy == "none":
        return block_cls
    return nn.remat(block_cls, policy=REMAT_POLICIES[policy], static_argnums=static_argnums)


def block_stack(
    parent: nn.Module,
    block: Callable[..., nn.Module],
    x,
    *,
    name: str,
    depth: int,
    scan: bool,
    args: tuple = (),
    deterministic: bool = True,
    drop_path: Sequence[float] | None = None,
    remat_policy: str = "none",
    start: int = 0,
    stacked_name: str | None = None,
    block_kwargs: Sequence[dict] | None = None,
    scanned_inputs: dict[str, Any] | None = None,
    collect: Sequence[int] = (),
):
    """Runs ``depth`` blocks of ``block`` (a module class or a partial of one) on ``x``,
    unrolled or under one ``nn.scan``. Call it inside ``parent``'s ``@nn.compact`` method.

    Layout: unrolled, block ``i`` is ``parent``'s submodule ``{name}_{start + i}`` built with
    ``block_kwargs[i]``; with ``scan`` they are one submodule ``stacked_name`` (default
    ``name``) whose params and batch_stats leaves have a leading [depth] axis, the layout
    ``stack_blocks(tree, name, depth, stacked_name, start)`` makes from the unrolled one.

    Blocks are called ``(x, *args, **inputs)`` and return the new ``x``; ``args`` are static
    (a ``deterministic`` or ``train`` flag). Per-block inputs: ``scanned_inputs`` (arrays with
    a leading [depth] axis, scanned only: what ``block_kwargs`` sets statically when unrolled)
    and, for stochastic depth, ``drop_path_key`` and ``drop_path_rate``.

    Stochastic depth: ``drop_path`` gives one rate per block (the block's ``drop_path``
    attribute when unrolled, its traced ``drop_path_rate`` input when scanned). In training
    each block gets ``drop_path_key``, the i-th split of one key from ``parent``'s
    ``'drop_path'`` stream, so the scanned and unrolled stacks drop the same samples.
    'params' and 'dropout' RNGs are split per scanned block.

    ``remat_policy`` is a ``REMAT_POLICIES`` name. Returns ``(x, outputs)``, ``outputs`` the
    outputs of the blocks at the 0-based positions in ``collect``, in that order.
    """
    if drop_path is not None and len(drop_path) != depth:
        raise ValueError(f"{len(drop_path)} drop-path rates for {depth} blocks")
    if depth == 0:
        return x, []
    if isinstance(block, functools.partial):
        if block.args:
            raise ValueError("give block_stack a partial with keyword arguments only")
        block_cls, common = block.func, dict(block.keywords)
    else:
        block_cls, common = block, {}
    # args follow self (0) and x (1): static for remat
    block_cls = remat(block_cls, remat_policy, static_argnums=tuple(range(2, 2 + len(args))))
    inputs = {}
    if drop_path is not None and not deterministic and any(r > 0 for r in drop_path):
        inputs["drop_path_key"] = jax.random.split(parent.make_rng("drop_path"), depth)
    if not scan:
        outputs = {}
        # measured on CPU only; under scan the loop boundary already stores the stream
        barrier = traced_for_cpu()
        for i in range(depth):
            if barrier:
                x = jax.tree.map(materialize, x)
            kw = {**common, **(block_kwargs[i] if block_kwargs else {})}
            if drop_path is not None:
                kw["drop_path"] = drop_path[i]
            step = {k: v[i] for k, v in inputs.items()}
            x = block_cls(**kw, name=f"{name}_{start + i}")(x, *args, **step)
            if i in collect:
                outputs[i] = x
        return x, [outputs[i] for i in collect]

    if inputs:
        inputs["drop_path_rate"] = jnp.asarray(drop_path, jnp.float32)
    inputs.update(scanned_inputs or {})
    keep = bool(collect)

    def body(mdl, carry, step):
        y = mdl(carry, *args, **step)
        return y, (y if keep else None)

    scanned = nn.scan(
        body,
        variable_axes={"params": 0, "batch_stats": 0},
        split_rngs={"params": True, "dropout": True},
        length=depth,
    )
    x, ys = scanned(block_cls(**common, name=stacked_name or name), x, inputs)
    return x, [ys[i] for i in collect]  # ys: [depth, *x.shape]


def stack_blocks(
    tree: dict, name: str, depth: int, stacked_name: str | None = None, start: int = 0
) -> dict:
    """Unrolled -> scanned: ``{name}_{start} .. {name}_{start + depth - 1}`` become one
    ``stacked_name`` (default ``name``) subtree with leaves stacked on a new leading axis."""
    names = [f"{name}_{start + i}" for i in range(depth)]
    out = {k: v for k, v in tree.items() if k not in names}
    out[stacked_name or name] = jax.tree_util.tree_map(
        lambda *xs: jnp.stack(xs), *[tree[n] for n in names]
    )
    return out


def unstack_blocks(
    tree: dict, name: str, depth: int, stacked_name: str | None = None, start: int = 0
) -> dict:
    """Scanned -> unrolled: the inverse of ``stack_blocks``."""
    out = {k: v for k, v in tree.items() if k != (stacked_name or name)}
    stacked = tree[stacked_name or name]
    for i in range(depth):
        out[f"{name}_{start + i}"] = jax.tree_util.tree_map(lambda x, i=i: x[i], stacked)
    return out


@dataclasses.dataclass(frozen=True)
class StackLayout:
    """Where one ``block_stack`` keeps its blocks in a model's variables: its ``name``,
    ``depth``, ``start`` and ``stacked_name`` (as passed to ``block_stack``) and ``path``, the
    modules above it (``('image_encoder',)`` for SAM's encoder, ``()`` at the root)."""

    name: str
    depth: int
    start: int = 0
    stacked_name: str | None = None
    path: tuple[str, ...] = ()


def restack(variables: dict, layouts: Sequence[StackLayout], *, scanned: bool) -> dict:
    """Variables of the unrolled model -> those of its ``scan=True`` twin (``scanned=True``)
    or back, in every collection that holds the blocks (params, BatchNorm batch_stats)."""
    fn = stack_blocks if scanned else unstack_blocks
    out = {}
    for col, tree in variables.items():
        for s in layouts:
            parent = tree
            for key in s.path:
                parent = parent.get(key, {})
            present = (s.stacked_name or s.name) if not scanned else f"{s.name}_{s.start}"
            if s.depth == 0 or present not in parent:
                continue
            new = fn(parent, s.name, s.depth, s.stacked_name, s.start)
            tree = _replace_at(tree, s.path, new)
        out[col] = tree
    return out


def _replace_at(tree: dict, path: tuple[str, ...], value: dict) -> dict:
    if not path:
        return value
    return {**tree, path[0]: _replace_at(tree[path[0]], path[1:], value)}
