"""Parameter-group parity: the weight-decay exemptions and layer-decay scales that
``jaxbones.train.optim.param_groups`` derives from a family's ``ParamGroups`` equal, parameter
for parameter (names mapped through the family's converter), the groups of the PyTorch code
the recipes cite: timm ``param_groups_layer_decay`` / ``param_groups_weight_decay`` (ViT,
ResNet, Swin), MAE ``param_groups_lrd`` (MAE fine-tuning) and MAE ``main_pretrain.py`` (MAE
pretraining). The comparisons and the deliberate differences (the final norm's layer,
Swin's patch merging) are ``scripts/optim_parity.py``'s ``GROUP_CASES``, which also renders
README's group table. Reduced-depth models, abstract shapes only.
"""

import pytest

from scripts import optim_parity as op


@pytest.mark.parametrize("case", list(op.GROUP_CASES))
def test_groups_equal_the_reference(case):
    r = op.group_diffs(case)
    assert r["names"] == ([], []), r["names"]
    assert not r["decay"] and not r["scale"], r
    assert r["params"] > 10


def test_deliberate_differences_are_where_documented():
    assert op.group_diffs("vit")["deliberate"] == ["norm.bias", "norm.weight"]
    swin = op.group_diffs("swin")["deliberate"]
    assert {n for n in swin if ".downsample." in n} and {"norm.bias", "norm.weight"} <= set(swin)
    assert not op.group_diffs("resnet")["deliberate"]


def test_mae_fixed_tables_are_not_decayed():
    ours = op.jaxbones_groups("mae_vit_base_patch16_dec512d8b", 1.0, depth=2, decoder_depth=1)
    assert not ours["pos_embed"][0] and not ours["decoder_pos_embed"][0]
    # main_pretrain.py decays cls_token and mask_token (no skip list)
    assert ours["cls_token"][0] and ours["mask_token"][0]
