"""Partial weight loads are explicit: ``init_from`` copies every parameter but the classifier
head unless ``config.init_fresh`` names what may stay fresh (and the report names what did);
a corrupt PyTorch file names itself."""

import jax
import numpy as np
import optax
import pytest

from jaxbones import convert
from jaxbones.registry import init_shapes
from jaxbones.train.checkpoint import Checkpointer, load_params
from jaxbones.train.config import default_config
from jaxbones.train.loop import head_paths
from jaxbones.train.step import create_state
from jaxbones.train.tasks import get_task

SMALL = {"layers": (1, 1, 1, 1)}


@pytest.fixture(scope="module")
def resnet_ckpt(tmp_path_factory):
    """A step-3 checkpoint of a one-block-per-stage resnet18 with a 10-class head."""
    wd = str(tmp_path_factory.mktemp("ckpt"))
    variables = _variables(0, 10)
    state = create_state(variables, optax.sgd(0.1), jax.random.PRNGKey(0), False)
    config = default_config()
    ckpt = Checkpointer(wd, async_=False, best_metric="")
    ckpt.save(3, state, [None], config)
    ckpt.close()
    return wd, variables["params"]


def _variables(seed=1, num_classes=5, **kw):
    """Random numpy variables of a small resnet18 (from shapes alone: nothing compiles)."""
    shapes = init_shapes("resnet18", num_classes=num_classes, **{**SMALL, **kw})
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), shapes)


def _target(num_classes=5, **kw):
    return _variables(1, num_classes, **kw)["params"]


def test_the_head_is_found_from_the_number_of_classes():
    config = default_config()
    config.model_kwargs.layers = SMALL["layers"]
    task = get_task("classification")
    params = init_shapes("resnet18", num_classes=5, **SMALL)["params"]
    assert head_paths(task, config, 5, 3, params) == {"fc/kernel", "fc/bias"}


def test_everything_but_the_head_is_copied(resnet_ckpt):
    wd, src = resnet_ckpt
    params, report = load_params(wd, _target(), "resnet18", head={"fc/kernel", "fc/bias"})
    assert report["fresh"] == ["fc/bias", "fc/kernel"] and report["step"] == 3
    assert report["copied"] == report["total"] - 2 and report["dropped"] == 2  # the 10-way fc
    np.testing.assert_array_equal(params["conv1"]["kernel"], src["conv1"]["kernel"])
    np.testing.assert_array_equal(params["fc"]["kernel"], _target()["fc"]["kernel"])
    # a head of the same shape is copied too
    _, report = load_params(wd, _target(10), "resnet18", head={"fc/kernel", "fc/bias"})
    assert report["fresh"] == [] and report["copied"] == report["total"]


def test_another_model_fails_unless_the_config_lets_parameters_stay_fresh(resnet_ckpt):
    wd, _ = resnet_ckpt
    deeper = _target(layers=(2, 1, 1, 1))  # layer1_1 is not in the checkpoint
    head = {"fc/kernel", "fc/bias"}
    with pytest.raises(ValueError, match=r"it lacks layer1_1 \(\d+\).*init_fresh='\(\"\^layer1_1/"):
        load_params(wd, deeper, "resnet18", head=head)
    _, report = load_params(wd, deeper, "resnet18", head=head, may_stay_fresh=(r"^layer1_1/",))
    assert {p.split("/")[0] for p in report["fresh"]} == {"layer1_1", "fc"}
    # a shared parameter of another shape is never left fresh silently
    gray = _target(in_chans=1)
    with pytest.raises(ValueError, match=r"conv1/kernel: checkpoint \(7, 7, 3, 64\) vs model"):
        load_params(wd, gray, "resnet18", head=head)


def test_a_corrupt_pth_names_the_file(tmp_path):
    import torch

    good = tmp_path / "good.pth"
    torch.save({"conv1.weight": torch.zeros(2)}, good)
    data = good.read_bytes()
    for name, content in [("truncated.pth", data[: len(data) // 2]), ("empty.pth", b"")]:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError, match=f"{path}.*not a readable PyTorch checkpoint"):
            convert.load_state_dict(str(path))
        with pytest.raises(ValueError, match=f"{path}.*truncated or corrupt"):
            convert.from_torch("resnet18", str(path))
