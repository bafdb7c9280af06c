"""Input validation with messages that name the fix."""

from __future__ import annotations


def check_input(x, *, in_chans: int, min_size: int = 1, multiple: int = 1, model: str = "model"):
    """Raises ValueError unless ``x`` is [B, H, W, in_chans] with H, W >= ``min_size`` and
    divisible by ``multiple``."""
    if x.ndim != 4:
        raise ValueError(
            f"{model} expects NHWC images [batch, height, width, {in_chans}], got shape "
            f"{tuple(x.shape)}; add a batch axis with x[None] if you passed one image"
        )
    _b, h, w, c = x.shape
    if c != in_chans:
        hint = ""
        if x.shape[1] == in_chans:
            hint = "; the images look NCHW: transpose them with x.transpose(0, 2, 3, 1)"
        raise ValueError(
            f"{model} was built for {in_chans} input channels but got {c} (shape "
            f"{tuple(x.shape)}){hint}; or create it with in_chans={c}"
        )
    if h < min_size or w < min_size:
        raise ValueError(
            f"{model} needs images of at least {min_size}x{min_size} pixels (it downsamples "
            f"that much), got {h}x{w}; resize the input up"
        )
    if multiple > 1 and (h % multiple or w % multiple):
        ok = sorted({(h // multiple) * multiple or multiple, (h // multiple + 1) * multiple})
        raise ValueError(
            f"{model} needs height and width divisible by {multiple}, got {h}x{w}; "
            f"sizes that work near it: {ok}"
        )
