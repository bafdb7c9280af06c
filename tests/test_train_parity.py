"""10 steps of the jaxbones train step against the PyTorch reference step for each recipe
family of ``scripts/train_parity.py`` on its reduced models (the full-size 100-step table is
in README's Parity section): the losses agree to float32 rounding and the final parameters
differ by a small share of how far the reference moved them."""

import numpy as np
import pytest
from helpers import assert_close

from scripts import train_parity

# the per-step losses (~2.3) after 10 steps; BatchNorm training (ResNet-50) amplifies rounding
LOSSES = {"rtol": 0, "atol": 1e-4}


@pytest.mark.parametrize("case", list(train_parity.CASES))
def test_ten_steps_match_the_torch_reference(case):
    r = train_parity.CASES[case](10, small=True)
    assert_close(np.asarray(r.losses_jax), np.asarray(r.losses_torch), **LOSSES)
    assert r.param_diff < 1e-2, r.param_diff
    if r.stats_diff is not None:  # BatchNorm running statistics
        assert r.stats_diff < 1e-3, r.stats_diff


def test_resnet_in_float64_matches_the_reference(monkeypatch):
    """In float32 the BatchNorm + ReLU ResNet amplifies rounding (README, Parity), so the test
    above can only be loose; with both sides in float64 what the SGD + BatchNorm step computes
    must agree to float64 rounding."""
    import jax

    monkeypatch.setattr(train_parity, "FLOAT64", True)
    with jax.enable_x64(True):
        r = train_parity.resnet50(10, small=True)
    assert max(r.loss_diffs) < 1e-11, r.loss_diffs
    assert r.param_diff < 1e-9 and r.stats_diff < 1e-10, (r.param_diff, r.stats_diff)
