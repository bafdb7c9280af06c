"""The public API contract: list_models, create_model errors, model_info, and the rule that
every registered model has an exact parameter-count test and a parity test."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import fast_jit, registered_in_tests

import jaxbones


def test_list_models_pattern():
    names = jaxbones.list_models()
    assert names == sorted(names) and "resnet50" in names
    assert jaxbones.list_models("resnet1*") == ["resnet101", "resnet152", "resnet18"]


def test_unknown_model_names_close_matches():
    with pytest.raises(ValueError, match="resnet50"):
        jaxbones.create_model("resnet05")


def test_unknown_override_names_close_matches():
    with pytest.raises(ValueError, match="num_classes"):
        jaxbones.create_model("resnet50", num_class=10)


def test_wrong_input_channels_and_layout():
    m = jaxbones.create_model("resnet18")
    with pytest.raises(ValueError, match="in_chans=1"):
        m.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 1)))
    with pytest.raises(ValueError, match="transpose"):
        m.init(jax.random.PRNGKey(0), jnp.zeros((1, 3, 64, 64)))
    m1 = jaxbones.create_model("resnet18", in_chans=1)
    assert m1.init_with_output(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 1)))[0].shape == (
        1,
        1000,
    )


def test_image_too_small():
    m = jaxbones.create_model("resnet50")
    with pytest.raises(ValueError, match="at least 32x32"):
        m.init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)))


def test_model_info():
    info = jaxbones.model_info("resnet50")
    assert info["input_size"] == (224, 224, 3)
    assert info["num_params"] == 25_557_032
    assert [f["reduction"] for f in info["feature_info"]] == [2, 4, 8, 16, 32]
    assert info["reference"] == "torchvision.models.resnet50"
    assert len(info["mean"]) == 3 and len(info["std"]) == 3


def test_every_registered_model_has_count_and_parity_tests():
    covered = registered_in_tests()
    names = set(jaxbones.list_models())
    assert names - covered["counts"] == set(), "models without an exact parameter-count test"
    assert names - covered["parity"] == set(), (
        "models without a parity test (or a NO_REFERENCE entry naming why there is none)"
    )


@pytest.mark.parametrize("name", jaxbones.list_models())
def test_forward_backward_every_model(name):
    """Every registered model runs forward and backward at a small input (gradients finite);
    deep variants at reduced depth (SMOKE_OVERRIDES) to keep compile time down on CI."""
    info = jaxbones.model_info(name)
    overrides = registered_in_tests()["smoke"].get(name, {})
    model = jaxbones.create_model(name, **overrides)
    h, w, c = info["input_size"]
    # models built for one input size (ViT, Swin, MAE, SAM, CLIP) get it from their overrides
    size = overrides.get("img_size") or min(h, max(info["min_size"], 64))
    x = jnp.ones((2, size, size if h == w else w, c))
    # one jitted init: eager init compiles every initializer op separately (seconds each)
    variables = fast_jit(lambda r: model.init(r, x))(jax.random.PRNGKey(0))

    def loss(params):
        out = model.apply(
            {**variables, "params": params},
            x,
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": jax.random.PRNGKey(1), "drop_path": jax.random.PRNGKey(2)},
        )[0]
        return sum(
            jnp.sum(jnp.square(o.astype(jnp.float32))) for o in jax.tree_util.tree_leaves(out)
        )

    value, grads = jax.device_get(fast_jit(jax.value_and_grad(loss))(variables["params"]))
    # checked in numpy: an eager jnp.isfinite compiles a program per leaf shape (seconds each)
    assert np.isfinite(value)
    assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads))
