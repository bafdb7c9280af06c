"""Optimiser and schedule parity with the PyTorch code the recipes in experiments/ come from
(the comparisons, their references and the deliberate differences are in
``scripts/optim_parity.py``, which also renders README's optimiser table): N steps of
``jaxbones.train.optim.make_optimizer`` on the same parameters and gradients give the same
parameters, and ``make_schedule`` the same learning rates, as timm / torch.optim / MAE's
``util/lars.py`` and ``util/lr_sched.py``."""

import numpy as np
import optax
import pytest
from helpers import fast_jit

from jaxbones.train import optim
from scripts import optim_parity as op


@pytest.mark.parametrize("case,scan", op.OPTIMIZER_RUNS)
def test_optimizer_steps_equal_the_torch_reference(case, scan):
    r = op.optimizer_run(case, scan)
    # param_rel <= 1: every parameter at every step within 2e-6 + 2e-5 |ref|
    assert r["param_rel"] <= 1.0, r
    assert r["lr_diff"] < 1e-6, r
    assert r["moved"] > 1e-2, r  # the steps moved the parameters far beyond the tolerance


def test_optax_lars_order_differs_from_mae_under_a_schedule():
    """Why optim.py does not use ``optax.lars``: it scales by the lr before the momentum, so
    the buffer holds lr-scaled steps; under warm-up the parameters part from MAE's LARS
    (which ``test_optimizer_steps_equal_the_torch_reference[lars]`` matches)."""
    from flax import traverse_util

    c = op._ocfg(name="lars", lr=2.0, weight_decay=0.05, schedule="cosine", warmup_steps=3)
    params = op._params(False)
    ours, schedule, groups = optim.make_optimizer(
        c, params, op.STEPS, op.STEPS, 256, op._vit_groups()
    )
    mask_tree = traverse_util.unflatten_dict({p: g.decay for p, g in groups.items()}, sep="/")
    theirs = optax.lars(
        schedule, weight_decay=0.05, weight_decay_mask=mask_tree, trust_ratio_mask=mask_tree
    )
    out = []
    for tx in (ours, theirs):
        p, s, update = params, tx.init(params), fast_jit(tx.update)
        for step in range(op.STEPS):
            u, s = update(op._grads(params, step, 1.0), s, p)
            p = optax.apply_updates(p, u)
        out.append(p["head"]["kernel"])
    assert np.max(np.abs(np.asarray(out[0]) - np.asarray(out[1]))) > 1e-3


@pytest.mark.parametrize("case", ["cosine", "linear", "step", "step_warmup", "mae_2.0"])
def test_schedule_equals_the_reference(case):
    ours, ref = op.schedule_lrs(case)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-7)


def test_timm_multistep_applies_each_milestone_one_step_earlier():
    ours, _ = op.schedule_lrs("step_warmup")
    milestones = [int(b * op.N) for b in op.MILESTONES]
    timm = op.timm_multistep(milestones, shift=0)
    assert np.flatnonzero(~np.isclose(ours, timm)).tolist() == [m - 1 for m in milestones]


def test_fractional_mae_warmup_is_rounded_to_whole_steps():
    """mae_pretrain / mae_finetune: warm-up epochs x steps per epoch steps; at a fractional
    number of warm-up steps (2.5 x 3 = 7.5) jaxbones rounds it (to 8), which moves every
    lr by less than peak / warm-up steps."""
    ours, ref = op.schedule_lrs("mae_2.5")
    d = np.abs(ours - ref)
    assert 0 < d.max() < op.PEAK / 7.5
