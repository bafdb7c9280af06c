"""The parity harness (``helpers.assert_close``, chex's tree assertions) fails where it should:
a 0.1% error on small outputs such as normalised CLIP features, non-finite gradients, shapes
that only broadcast. Numpy inputs only: no model runs here."""

import chex
import numpy as np
import pytest
from helpers import assert_close, assert_not_close
from test_clip import OUTPUT_TOLS


def _clip_features(dim=512, n=4, seed=0):
    """Unit-norm rows: each element is ~1/sqrt(dim), 0.04 for CLIP's 512-d embeddings."""
    f = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return f / np.linalg.norm(f, axis=-1, keepdims=True)


@pytest.mark.parametrize("output", ["image features", "text features"])
def test_relative_error_1e3_on_clip_features_fails(output):
    ref = _clip_features()
    scale = float(np.mean(np.abs(ref)))
    assert 0.03 < scale < 0.04
    signs = np.sign(np.random.default_rng(1).standard_normal(ref.shape)).astype(np.float32)
    wrong = ref + 1e-3 * scale * signs  # a relative error of 1e-3 at the typical magnitude
    # a bound of 1e-4 * max(1, max|ref|) lets this through: the error is below 1e-4 absolute
    assert np.max(np.abs(wrong - ref)) < 1e-4
    assert_not_close(wrong, ref, **OUTPUT_TOLS[output])
    with pytest.raises(AssertionError, match="Not equal to tolerance"):
        assert_close(wrong, ref, **OUTPUT_TOLS[output])


@pytest.mark.parametrize("output", ["image features", "text features"])
def test_float32_rounding_on_clip_features_passes(output):
    ref = _clip_features()
    eps = np.finfo(np.float32).eps
    noise = np.random.default_rng(1).uniform(-4 * eps, 4 * eps, ref.shape).astype(np.float32)
    assert_close(ref * (1 + noise), ref, **OUTPUT_TOLS[output])


def test_non_finite_gradients_fail():
    grads = {"conv": {"kernel": np.ones((3, 3, 2, 4), np.float32)}, "bias": np.zeros(4)}
    chex.assert_tree_all_finite(grads)
    for bad in (np.nan, np.inf):
        broken = {**grads, "bias": np.array([0.0, bad, 0.0, 0.0], np.float32)}
        with pytest.raises(AssertionError, match="finite"):
            chex.assert_tree_all_finite(broken)


def test_shapes_must_match_not_broadcast():
    ref = _clip_features(n=1)
    with pytest.raises(AssertionError):
        assert_close(ref[0], ref, rtol=0, atol=1.0)
    with pytest.raises(AssertionError):
        assert_close({"a": ref}, {"b": ref}, rtol=0, atol=1.0)  # tree structure too
