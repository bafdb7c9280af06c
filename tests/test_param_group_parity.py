"""Parameter-group parity: the weight-decay exemptions and layer-decay scales that
``jaxbones.train.optim.param_groups`` derives from a family's ``ParamGroups`` equal, parameter
for parameter (names mapped through the family's converter), the groups of the PyTorch code
the recipes cite:
  * ViT, ResNet, Swin: timm ``param_groups_layer_decay`` / ``param_groups_weight_decay``
    with the model's ``no_weight_decay()`` (``create_optimizer_v2``'s grouping);
  * MAE fine-tuning (a ViT with global pooling + fc_norm): MAE ``util/lr_decay.py``
    ``param_groups_lrd`` (restated in ``scripts/train_parity.py:mae_lrd_groups``, which the
    training-curve comparison uses too);
  * MAE pretraining: MAE ``main_pretrain.py``, timm's ``add_weight_decay`` without a skip
    list: only 1-D parameters and biases are exempt, so ``cls_token`` and ``mask_token`` are
    decayed; the fixed sin-cos tables are not trained (``requires_grad=False``).
Deliberate differences from timm's ``group_matcher`` numbering (asserted below): the final
``norm`` of ViT and Swin shares the head's layer (scale 1) as in MAE ``util/lr_decay.py`` (the
layer-decay recipe ``mae_finetune`` cites it) and SimMIM ``optimizer.py`` (the Swin authors'
fine-tuning), where timm puts it one layer below (scale ``layer_decay``); Swin's patch merging
at the start of stage s takes the id of stage s - 1's last block (SimMIM, whose layout ends a
stage with its merging), where timm takes stage s's first block (one layer later).
Reduced-depth models, abstract shapes only.
"""

import numpy as np
import timm
from flax import traverse_util
from timm.optim import param_groups_layer_decay, param_groups_weight_decay

from jaxbones.convert import get_converter
from jaxbones.registry import get_entry, init_shapes
from jaxbones.train import config as config_lib
from jaxbones.train import optim
from scripts.train_parity import mae_lrd_groups

LD = 0.65
WD = 0.05


def jaxbones_groups(name, layer_decay, **kw) -> dict[str, tuple[bool, float]]:
    """{torch name: (decayed, lr scale)} from the jaxbones parameter table."""
    entry = get_entry(name)
    params = init_shapes(name, **kw)["params"]
    c = config_lib.default_config().optimizer
    c.layer_decay = layer_decay
    groups = optim.param_groups(params, c, entry.param_groups)
    conv = get_converter(entry.family)
    out = {}
    for path, g in groups.items():
        key = ("params", *path.split("/"))
        out[conv.map(key, len(g.shape)).torch_key] = (g.decay, float(g.lr_scale))
    return out


def torch_groups(model, groups) -> dict[str, tuple[bool, float]]:
    names = {id(p): n for n, p in model.named_parameters()}
    return {
        names[id(p)]: (g["weight_decay"] > 0, float(g.get("lr_scale", 1.0)))
        for g in groups
        for p in g["params"]
    }


def _assert_same(ours, ref, scale_ratio=None):
    """Same names, exemptions and scales (ours = ref x ``scale_ratio(name)``)."""
    assert sorted(ours) == sorted(ref)
    ratio = scale_ratio or (lambda n: 1.0)
    diff = {n: (ours[n], ref[n]) for n in ref if ours[n][0] != ref[n][0]}
    diff.update(
        {n: (ours[n], ref[n]) for n in ref if not np.isclose(ours[n][1], ref[n][1] * ratio(n))}
    )
    assert not diff, diff


def test_vit_equals_timm_layer_decay_groups():
    ours = jaxbones_groups("vit_tiny_patch16_224", LD, depth=2)
    model = timm.create_model("vit_tiny_patch16_224", depth=2)
    ref = torch_groups(
        model,
        param_groups_layer_decay(
            model, WD, no_weight_decay_list=model.no_weight_decay(), layer_decay=LD
        ),
    )
    _assert_same(ours, ref, lambda n: 1 / LD if n.startswith("norm.") else 1.0)


def test_mae_finetune_vit_equals_mae_param_groups_lrd():
    kw = {"depth": 2, "global_pool": "avg", "fc_norm": True}
    ours = jaxbones_groups("vit_tiny_patch16_224", LD, **kw)
    model = timm.create_model("vit_tiny_patch16_224", **kw)
    _assert_same(ours, torch_groups(model, mae_lrd_groups(model, WD, LD)))


def test_mae_pretrain_decay_equals_main_pretrain():
    ours = jaxbones_groups("mae_vit_base_patch16_dec512d8b", 1.0, depth=2, decoder_depth=1)
    shapes = traverse_util.flatten_dict(
        init_shapes("mae_vit_base_patch16_dec512d8b", depth=2, decoder_depth=1)["params"]
    )
    conv = get_converter("mae")
    ndim = {
        conv.map(("params", *k), len(s.shape)).torch_key: len(s.shape) for k, s in shapes.items()
    }
    fixed = {"pos_embed", "decoder_pos_embed"}  # requires_grad=False in models_mae.py
    ref = {n: (not (d == 1 or n.endswith(".bias")), 1.0) for n, d in ndim.items() if n not in fixed}
    _assert_same({n: g for n, g in ours.items() if n not in fixed}, ref)
    assert not ours["pos_embed"][0] and not ours["decoder_pos_embed"][0]


def test_resnet_equals_timm_weight_decay_groups():
    ours = jaxbones_groups("resnet18", 1.0)
    model = timm.create_model("resnet18")
    ref = torch_groups(model, param_groups_weight_decay(model, WD))
    _assert_same(ours, ref)


def test_swin_equals_timm_layer_decay_groups_but_norm_and_merging():
    depths = (1, 1, 2, 1)
    ours = jaxbones_groups("swin_tiny_patch4_window7_224", LD, depths=depths)
    model = timm.create_model("swin_tiny_patch4_window7_224", depths=depths)
    ref = torch_groups(
        model,
        param_groups_layer_decay(
            model, WD, no_weight_decay_list=model.no_weight_decay(), layer_decay=LD
        ),
    )

    def ratio(n):
        return 1 / LD if n.startswith("norm.") else LD if ".downsample." in n else 1.0

    _assert_same(ours, ref, ratio)
