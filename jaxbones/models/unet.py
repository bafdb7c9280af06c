"""UNet, UNet++ and UNet3+ segmentation networks, on their own encoder or on any backbone.

References: Ronneberger et al. 2015, "U-Net" (two 3x3 conv per level, 2x2 max-pool down,
2x2 up-convolution + skip concatenation up; we use padded convs + BatchNorm as is usual
today, so the output has the input's size); Zhou et al. 2018, "UNet++" (nested dense skip
pathways, deep supervision); Huang et al. 2020, "UNet 3+" (full-scale skip connections,
classification-guided module). No PyTorch package ships these, so there is no parity test
against a library; the layers they are made of are parity-tested (``tests/test_upsample.py``).

Encoders. With ``backbone=None`` each network builds the paper's plain encoder (``widths``
channels, one ``DoubleConv`` per level, max-pool between levels: total stride
``2 ** (len(widths) - 1)``). With ``backbone='resnet50'`` (any registered model with a
``features_only`` option) the encoder is ``create_model(backbone, features_only=True)`` and
the decoder is built generically from its ``feature_info`` (channels, reduction per level):
between levels j+1 and j it upsamples by ``reduction[j+1] // reduction[j]``; when the
shallowest level is not full resolution (ResNet: 2, Swin: 4) a final stage upsamples by
``reduction[0]`` and refines with a ``DoubleConv`` before the 1x1 classifier.

Input sizes must be multiples of the total stride (the deepest reduction), otherwise skip
connections would not line up: by default a clear error lists sizes that work; with
``pad_to_multiple=True`` the input is zero-padded at the bottom/right to the next multiple
and the logits are cropped back to the input size.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxbones.layers import (
    UPSAMPLE_MODES,
    ConvNormAct,
    Upsample,
    check_input,
    conv2d,
    max_pool2d,
    resize_to,
)
from jaxbones.layers.norm import BatchNorm
from jaxbones.layers.param_groups import ParamGroups
from jaxbones.registry import register_model

Dtype = Any


class DoubleConv(nn.Module):
    """Two (3x3 conv -> BatchNorm -> ReLU), the UNet level block; submodules ``conv1``,
    ``conv2`` (each a ``ConvNormAct`` with ``conv``/``bn``).

    Attributes:
      features: output channels of both convs; dtype, param_dtype.
    """

    features: int
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        x = ConvNormAct(self.features, 3, name="conv1", **kw)(x, train)
        return ConvNormAct(self.features, 3, name="conv2", **kw)(x, train)


def backbones_with_features() -> list[str]:
    """Registered models that can serve as a UNet encoder (they have ``features_only``)."""
    from jaxbones.registry import list_models, model_fields

    return [n for n in list_models() if "features_only" in model_fields(n)]


def _make_backbone(mod) -> nn.Module:
    """Builds ``mod.backbone`` with ``features_only=True`` as the submodule ``encoder``."""
    from jaxbones.registry import get_entry, model_fields

    name = mod.backbone
    fields = model_fields(name)  # unknown name: ValueError with close matches
    if "features_only" not in fields:
        ok = [n for n in backbones_with_features() if not n.startswith(("unet", "espcn"))]
        raise ValueError(
            f"backbone {name!r} does not expose multi-scale features (no features_only "
            f"option); backbones that do: {', '.join(ok)}"
        )
    kw = dict(mod.backbone_kwargs or {})
    for key in kw:
        if key not in fields:
            raise ValueError(
                f"backbone_kwargs: {name} has no option {key!r}; valid: {', '.join(fields)}"
            )
    kw["features_only"] = True
    for key in ("in_chans", "dtype", "param_dtype"):
        if key in fields and key not in kw:
            kw[key] = getattr(mod, key)
    return get_entry(name).fn(name="encoder", **kw)


def _reductions(mod, encoder) -> list[int]:
    if encoder is None:
        return [2**i for i in range(len(mod.widths))]
    reds = [int(f["reduction"]) for f in encoder.feature_info]
    for a, b in itertools.pairwise(reds):
        if b % a:
            raise ValueError(
                f"backbone {mod.backbone!r} feature reductions {reds} are not each a multiple "
                "of the previous one; select levels with backbone_kwargs={'out_indices': ...}"
            )
    return reds


def _prepare(mod, x, multiple: int, model: str):
    """Validates the input size or pads it to ``multiple``; returns (x, (H, W) to crop to)."""
    check_input(x, in_chans=mod.in_chans, model=model)
    h, w = x.shape[1:3]
    if mod.pad_to_multiple:
        # zeros at the bottom/right: on normalised images that is the mean colour
        x = jnp.pad(x, ((0, 0), (0, -h % multiple), (0, -w % multiple), (0, 0)))
    elif h % multiple or w % multiple or h < multiple or w < multiple:

        def near(n):
            return sorted({max(multiple, n // multiple * multiple), -(-n // multiple) * multiple})

        raise ValueError(
            f"{model} needs height and width that are multiples of its total stride {multiple} "
            f"(so skip connections line up), got {h}x{w}; heights that work near it: "
            f"{near(h)}, widths: {near(w)}; or create it with pad_to_multiple=True to pad "
            "the input and crop the logits back"
        )
    return x.astype(mod.dtype or x.dtype), (h, w)


def _encode(mod, x, train, encoder):
    if encoder is not None:
        return list(encoder(x, train=train))
    feats = []
    for i, width in enumerate(mod.widths):
        if i:
            x = max_pool2d(x, 2, 2)
        x = DoubleConv(width, mod.dtype, mod.param_dtype, name=f"enc{i}")(x, train)
        feats.append(x)
    return feats


def _decoder_widths(mod, reds: list[int]) -> list[int]:
    """Decoder widths deep -> shallow: one per level below the deepest, plus one for the
    final full-resolution stage when the shallowest level is downsampled."""
    n_blocks = len(reds) - 1 + (reds[0] > 1)
    if mod.decoder_widths is not None:
        widths = list(mod.decoder_widths)
    elif mod.backbone is None:
        widths = list(mod.widths[:-1])[::-1]  # the paper's symmetric decoder
    else:
        widths = [max(16, 256 // 2**k) for k in range(n_blocks)]  # 256, 128, 64, 32, 16
    if len(widths) != n_blocks:
        raise ValueError(
            f"decoder_widths needs {n_blocks} entries (deep -> shallow; encoder reductions "
            f"{reds}), got {len(widths)}: {tuple(widths)}"
        )
    return widths


def _final_stage(mod, train, width, r0, name="final"):
    """The stage that brings the shallowest decoder output to full resolution when it is not
    already (``r0`` > 1): upsample by ``r0`` (``{name}_up``) + ``DoubleConv``
    (``{name}_conv``). Returns a function of the features; calling it several times (UNet++'s
    deep-supervision heads) shares the stage's weights. Identity when ``r0 == 1``."""
    if r0 == 1:
        return lambda y: y
    kw = {"dtype": mod.dtype, "param_dtype": mod.param_dtype}
    up = Upsample(width, r0, mod.upsample, name=f"{name}_up", **kw)
    conv = DoubleConv(width, name=f"{name}_conv", **kw)
    return lambda y: conv(up(y), train)


def _up_block(mod, skips, deep, width, factor, train, up_name, conv_name):
    """One decoder stage: upsample ``deep`` by ``factor`` to ``width`` channels, concatenate
    after the ``skips`` (same resolution; skip first, as the paper's figure) and refine with
    a ``DoubleConv``."""
    kw = {"dtype": mod.dtype, "param_dtype": mod.param_dtype}
    up = Upsample(width, factor, mod.upsample, name=up_name, **kw)(deep)
    y = jnp.concatenate([*skips, up], axis=-1)
    return DoubleConv(width, name=conv_name, **kw)(y, train)


def _head(mod, x, name="head", k=1):
    return conv2d(
        mod.num_classes, k, bias=True, dtype=mod.dtype, param_dtype=mod.param_dtype, name=name
    )(x)


def _check_upsample(mod):
    if mod.upsample not in UPSAMPLE_MODES:
        raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {mod.upsample!r}")


class _Base:
    """Shared fields/behaviour documented on each network."""

    @property
    def total_stride(self) -> int:
        """Input height and width must be multiples of this (or use ``pad_to_multiple``)."""
        if self.backbone is None:
            return 2 ** (len(self.widths) - 1)
        from jaxbones.registry import get_entry

        info = get_entry(self.backbone).fn(
            features_only=True, parent=None, **dict(self.backbone_kwargs or {})
        )
        return max(int(f["reduction"]) for f in info.feature_info)

    def _start(self, x, train, name):
        """Checks the options and the input, runs the encoder; returns (x, (H, W) to crop
        the logits to, encoder features shallow -> deep, their reductions)."""
        _check_upsample(self)
        encoder = _make_backbone(self) if self.backbone is not None else None
        reds = _reductions(self, encoder)
        x, size = _prepare(self, x, max(reds), name)
        return x, size, _encode(self, x, train, encoder), reds


class UNet(_Base, nn.Module):
    """UNet (Ronneberger et al. 2015) with its own encoder or a backbone's features.

    Attributes:
      num_classes: output channels (per-pixel logits).
      in_chans: input channels.
      widths: channels of the plain encoder levels (the paper: 64 ... 1024).
      backbone: registered model name used as encoder (``None``: the plain encoder).
      backbone_kwargs: options for the backbone (e.g. ``{'layers': (1, 1, 1, 1)}``).
      decoder_widths: decoder channels deep -> shallow (default: the encoder's mirror for the
        plain encoder, 256/2^k for a backbone).
      upsample: ``'transpose'`` (the paper's up-convolution), ``'bilinear'``, ``'nearest'``
        (resize + conv) or ``'pixel_shuffle'`` (sub-pixel conv).
      pad_to_multiple: pad inputs to a multiple of ``total_stride`` and crop the logits back
        (default: sizes that are not multiples raise an error naming sizes that work).
      dtype, param_dtype.
    Returns logits [B, H, W, num_classes].
    """

    num_classes: int = 2
    in_chans: int = 3
    widths: Sequence[int] = (64, 128, 256, 512, 1024)
    backbone: str | None = None
    backbone_kwargs: Mapping[str, Any] | None = None
    decoder_widths: Sequence[int] | None = None
    upsample: str = "transpose"
    pad_to_multiple: bool = False
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x, (h, w), feats, reds = self._start(x, train, "UNet")
        dws = _decoder_widths(self, reds)
        y = feats[-1]
        for k, j in enumerate(range(len(feats) - 2, -1, -1)):
            factor = reds[j + 1] // reds[j]
            y = _up_block(self, [feats[j]], y, dws[k], factor, train, f"up{j}", f"dec{j}")
        y = _final_stage(self, train, dws[-1], reds[0])(y)
        return _head(self, y)[:, :h, :w]


class UNetPlusPlus(_Base, nn.Module):
    """UNet++ (Zhou et al. 2018): nested dense skip pathways.

    Node ``X[i][j]`` (level i, column j >= 1) is ``DoubleConv`` (submodule ``x{i}_{j}``) of the
    concatenation of ``X[i][0..j-1]`` and the upsampled ``X[i+1][j-1]`` (``up{i}_{j}``);
    ``X[i][0]`` are the encoder features.

    Attributes:
      deep_supervision: a 1x1 head on every top node ``X[0][1..n-1]`` (``head{j}``); with
        ``train=True`` the list of their logits is returned (average the losses, e.g. with
        ``jaxbones.train.segmentation.cross_entropy`` which accepts a list), with
        ``train=False`` their average (the paper's "accurate mode").
      Others as ``UNet`` (``decoder_widths`` deep -> shallow are the node widths per level).
    Returns logits [B, H, W, num_classes] (or a list, see ``deep_supervision``).
    """

    num_classes: int = 2
    in_chans: int = 3
    widths: Sequence[int] = (64, 128, 256, 512, 1024)
    backbone: str | None = None
    backbone_kwargs: Mapping[str, Any] | None = None
    decoder_widths: Sequence[int] | None = None
    upsample: str = "transpose"
    deep_supervision: bool = False
    pad_to_multiple: bool = False
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x, (h, w), feats, reds = self._start(x, train, "UNetPlusPlus")
        n = len(feats)
        dws = _decoder_widths(self, reds)
        grid = [[f] for f in feats]  # grid[i][j] = X[i][j]
        for j in range(1, n):  # column by column: X[i][j] needs X[i+1][j-1]
            for i in range(n - j):
                factor = reds[i + 1] // reds[i]
                width = dws[n - 2 - i]  # the node width of level i
                names = (f"up{i}_{j}", f"x{i}_{j}")
                node = _up_block(
                    self, grid[i][:j], grid[i + 1][j - 1], width, factor, train, *names
                )
                grid[i].append(node)
        final = _final_stage(self, train, dws[-1], reds[0])
        if not self.deep_supervision:
            return _head(self, final(grid[0][n - 1]))[:, :h, :w]
        # the final stage (if any) is shared by the heads; each head has its own 1x1 conv
        outs = [_head(self, final(grid[0][j]), f"head{j}")[:, :h, :w] for j in range(1, n)]
        if train:
            return outs
        return sum(outs) / len(outs)


class UNet3Plus(_Base, nn.Module):
    """UNet 3+ (Huang et al. 2020): full-scale skip connections.

    Decoder level i (``De[i]``, i = n-2 ... 0; ``De[n-1]`` is the deepest encoder level)
    fuses every scale: shallower encoder levels ``En[k<i]`` max-pooled down, ``En[i]``, and
    deeper decoder levels ``De[k>i]`` upsampled (``upsample`` mode), each mapped to
    ``cat_channels`` by conv3x3-BN-ReLU (submodules ``d{i}_from{k}``), concatenated and fused
    by a conv3x3-BN-ReLU with ``n * cat_channels`` channels (``d{i}_fuse``).

    Attributes:
      cat_channels: channels per scale in a decoder level (the paper: 64).
      deep_supervision: 3x3 heads on every decoder level and the deepest encoder level
        (``head{i}``), bilinearly resized to the input: with ``train=True`` the list
        ``[De0, De1, ..., En_{n-1}]`` logits is returned, with ``train=False`` only De0's.
      cgm: the classification-guided module: dropout(0.5) -> 1x1 conv to 2 -> global max
        pool on the deepest encoder features gives image-level "has foreground" logits
        ``[B, 2]`` (train them on ``segmentation.has_foreground(mask)``). The output is then
        ``(seg_logits, cls_logits)``; with ``train=False`` images classified as background
        only get foreground logits (classes >= 1) of -1e4, so they predict class 0.
      Others as ``UNet``; ``decoder_widths`` only sizes the final full-resolution stage of a
      backbone whose shallowest level is downsampled (the default is ``n * cat_channels``).
    """

    num_classes: int = 2
    in_chans: int = 3
    widths: Sequence[int] = (64, 128, 256, 512, 1024)
    backbone: str | None = None
    backbone_kwargs: Mapping[str, Any] | None = None
    decoder_widths: Sequence[int] | None = None
    cat_channels: int = 64
    upsample: str = "bilinear"
    deep_supervision: bool = False
    cgm: bool = False
    cgm_dropout: float = 0.5
    pad_to_multiple: bool = False
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x, (h, w), feats, reds = self._start(x, train, "UNet3Plus")
        n = len(feats)
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        fused = n * self.cat_channels
        dec = {n - 1: feats[-1]}
        for i in range(n - 2, -1, -1):
            parts = []
            for k in range(n):
                if k < i:
                    f = max_pool2d(feats[k], reds[i] // reds[k], reds[i] // reds[k])
                    f = ConvNormAct(self.cat_channels, 3, name=f"d{i}_from{k}", **kw)(f, train)
                elif k == i:
                    f = ConvNormAct(self.cat_channels, 3, name=f"d{i}_from{k}", **kw)(
                        feats[i], train
                    )
                else:
                    f = Upsample(
                        self.cat_channels,
                        reds[k] // reds[i],
                        self.upsample,
                        name=f"d{i}_from{k}_up",
                        **kw,
                    )(dec[k])
                    f = nn.relu(BatchNorm(name=f"d{i}_from{k}_bn", **kw)(f, train))
                parts.append(f)
            y = jnp.concatenate(parts, axis=-1)
            dec[i] = ConvNormAct(fused, 3, name=f"d{i}_fuse", **kw)(y, train)
        if reds[0] > 1:
            n_final = 1
            if self.decoder_widths is not None and len(self.decoder_widths) != n_final:
                raise ValueError(
                    f"UNet3Plus decoder_widths sizes only the final stage: give 1 entry, got "
                    f"{tuple(self.decoder_widths)}"
                )
            width = self.decoder_widths[0] if self.decoder_widths is not None else fused
            top = _final_stage(self, train, width, reds[0])(dec[0])
        else:
            top = dec[0]
        k_head = 3 if self.deep_supervision else 1
        seg = _head(self, top, "head0" if self.deep_supervision else "head", k_head)
        seg = seg[:, :h, :w]
        if self.deep_supervision:
            # the side heads are built in eval too, so both modes have the same parameters
            size = x.shape[1:3]
            outs = [seg]
            for i in range(1, n):
                d = _head(self, dec[i], f"head{i}", 3)
                outs.append(resize_to(d, size)[:, :h, :w])
            seg = outs if train else seg
        if not self.cgm:
            return seg
        c = nn.Dropout(self.cgm_dropout)(feats[-1], deterministic=not train)
        c = conv2d(2, 1, bias=True, name="cls_head", **kw)(c)
        cls_logits = c.max(axis=(1, 2)).astype(jnp.float32)  # AdaptiveMaxPool2d(1): [B, 2]
        if not train:
            present = (cls_logits.argmax(-1) == 1)[:, None, None, None]
            background_only = seg.at[..., 1:].set(-1e4)
            seg = jnp.where(present, seg, background_only)
        return seg, cls_logits


# ----------------------------------------------------------------------------- registry

_info = {"family": "unet", "input_size": (256, 256, 3)}


def _reg(name, fn, min_size):
    register_model(name, fn, min_size=min_size, **_info)


_reg("unet", UNet, 16)
_reg("unetpp", UNetPlusPlus, 16)
_reg("unet3p", UNet3Plus, 16)
_reg("unet_resnet18", functools.partial(UNet, backbone="resnet18"), 32)
_reg("unet_resnet50", functools.partial(UNet, backbone="resnet50"), 32)
_reg("unetpp_resnet18", functools.partial(UNetPlusPlus, backbone="resnet18"), 32)
_reg("unet3p_resnet18", functools.partial(UNet3Plus, backbone="resnet18"), 32)
# the same generic code on a transformer backbone (feature reductions 4, 8, 16, 32)
register_model(
    "unet_swin_tiny",
    functools.partial(UNet, backbone="swin_tiny_patch4_window7_224"),
    family="unet",
    input_size=(224, 224, 3),
    min_size=32,
    param_groups=ParamGroups(no_decay=("relative_position_bias_table",)),  # Swin's exemption
)
