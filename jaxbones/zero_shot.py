"""Zero-shot classification with CLIP (open_clip ``zero_shot_classifier.py``).

``build_zero_shot_classifier`` embeds every class name in every prompt template, averages the
L2-normalised text embeddings per class and renormalises: a [embed_dim, num_classes] weight
matrix. ``zero_shot_logits`` scores images against it (100 * cosine, the scale open_clip's
zero-shot evaluation uses).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxbones.models.clip import l2_normalize
from jaxbones.text import get_tokenizer


def build_zero_shot_classifier(
    model,
    variables,
    classnames: Sequence[str],
    templates: Sequence[str | Callable[[str], str]],
    *,
    tokenizer: Callable | None = None,
    num_classes_per_batch: int | None = 10,
) -> jax.Array:
    """[embed_dim, num_classes] classifier weights.

    Args:
      model, variables: a CLIP module and its variables.
      classnames: class names; templates: ``"a photo of a {}."`` format strings or callables.
      tokenizer: texts -> [N, context_length] ids (default ``jaxbones.text`` BPE).
      num_classes_per_batch: classes embedded per forward pass (None: all at once).
    """
    if not classnames or not templates:
        raise ValueError("build_zero_shot_classifier needs at least one class name and template")
    tokenizer = tokenizer or get_tokenizer()
    encode = jax.jit(lambda v, t: model.apply(v, t, normalize=True, method="encode_text"))
    n_tmpl = len(templates)
    step = num_classes_per_batch or len(classnames)
    columns = []
    for start in range(0, len(classnames), step):
        names = classnames[start : start + step]
        texts = [t.format(c) if isinstance(t, str) else t(c) for c in names for t in templates]
        emb = encode(variables, jnp.asarray(np.asarray(tokenizer(texts))))  # [n * T, D]
        emb = emb.astype(jnp.float32).reshape(len(names), n_tmpl, -1).mean(axis=1)
        columns.append(l2_normalize(emb).T)  # [D, n]
    return jnp.concatenate(columns, axis=1)


def zero_shot_logits(model, variables, images, classifier, scale: float = 100.0) -> jax.Array:
    """[B, num_classes] logits: ``scale`` * normalised image features @ ``classifier``."""
    feats = model.apply(variables, images, normalize=True, method="encode_image")
    return scale * feats.astype(jnp.float32) @ classifier
