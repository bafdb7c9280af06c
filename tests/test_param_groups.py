"""The parameter-group table ``train.run`` prints at start-up, for every recipe in
experiments/: weight-decay exemptions and layer ids come from the model families'
``ParamGroups`` declarations, and the table must not change unnoticed.

``tests/data/recipe_param_groups.txt`` holds the tables (abstract parameters, no compute;
1000 steps, 100 per epoch); after an intended change, rewrite it with
``python tests/test_param_groups.py`` and review the diff."""

import functools
import importlib
import os
import sys

import jax
import numpy as np
import pytest
from flax import traverse_util

from jaxbones.registry import get_entry, list_models
from jaxbones.train import optim
from jaxbones.train.loop import build_optimizer, optim_peak
from jaxbones.train.tasks import get_task

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "recipe_param_groups.txt")
# recipe -> classes of its dataset (imagenet2012 1000, digits 10, digits_seg 11, CLIP none)
RECIPES = {
    "quickstart": 10,
    "resnet_imagenet": 1000,
    "vit_imagenet": 1000,
    "swin_imagenet": 1000,
    "mae_pretrain": 0,
    "mae_finetune": 1000,
    "mae_linprobe": 1000,
    "unet_segmentation": 11,
    "clip_pretrain": 0,
}


def recipe_table(name: str) -> str:
    config = importlib.import_module(f"experiments.{name}").get_config()
    task = get_task(config.task)
    model = task.build_model(config, RECIPES[name], 3)
    init = functools.partial(task.init, model, config, channels=3)
    params = jax.eval_shape(init, jax.random.PRNGKey(0))["params"]
    _, schedule, groups = build_optimizer(config, task, params, 1000, 100)
    return optim.format_groups(groups, optim_peak(schedule, 1000))


def _golden() -> dict[str, str]:
    with open(GOLDEN) as f:
        text = f.read()
    out = {}
    for chunk in text.split("== ")[1:]:
        name, table = chunk.split("\n", 1)
        out[name] = table.rstrip("\n")
    return out


def test_every_recipe_has_a_table():
    assert sorted(_golden()) == sorted(RECIPES)


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_param_group_table_unchanged(name):
    assert recipe_table(name) == _golden()[name]


def _zeros(name, **overrides):
    from jaxbones.registry import init_shapes

    shapes = init_shapes(name, **overrides)["params"]
    return jax.tree_util.tree_map(lambda s: np.zeros(s.shape, np.int8), shapes)


@pytest.mark.parametrize(
    "name,kw",
    [
        ("vit_tiny_patch16_224", {"depth": 2}),
        ("swin_tiny_patch4_window7_224", {"depths": (1, 1, 2, 1)}),
        ("resnet18", {}),
        ("mae_vit_base_patch16_dec512d8b", {"depth": 2, "decoder_depth": 1}),
    ],
)
def test_scanned_and_unrolled_stacks_get_the_same_groups(name, kw):
    """A scanned stack's parameters (leading [depth] axis) decay and scale exactly like the
    unrolled blocks they stack."""
    groups_of = get_entry(name).param_groups
    decay = 0.5 if groups_of.layer_ids else 1.0

    def table(scan):
        params = _zeros(name, scan=scan, **kw)
        mask = traverse_util.flatten_dict(optim.decay_mask(params, groups_of), sep="/")
        scales = optim.layer_scales(params, decay, groups_of)
        shapes = traverse_util.flatten_dict(params, sep="/")
        rows = set()
        for p, x in shapes.items():
            s = scales[p] if isinstance(scales[p], tuple) else (scales[p],)
            n = x.shape[0] if len(s) > 1 or groups_of.stacked(p) else 1
            leaf = p.rsplit("/", 1)[-1]
            for i in range(n):
                rows.add((leaf, bool(mask[p]), s[i if len(s) > 1 else 0]))
        return rows

    assert table(True) == table(False)


def test_every_family_with_a_scan_option_declares_its_stacks():
    from jaxbones.registry import model_fields

    for name in list_models():
        if "scan" in model_fields(name):
            assert get_entry(name).param_groups is not None, name
            assert get_entry(name).param_groups.stacks, name


if __name__ == "__main__":  # rewrite the recorded tables
    with open(sys.argv[1] if len(sys.argv) > 1 else GOLDEN, "w") as f:
        f.writelines(f"== {n}\n{recipe_table(n)}\n\n" for n in RECIPES)
