"""The named mesh on 8 fake CPU devices: the same loss curve on every (data, fsdp, tensor)
mesh as on one device (tiny ViT, tiny scanned MAE, tiny ResNet), the parameter shardings the
families' partition rules give, checkpoints restored under another mesh, DCN axes and the
errors of mesh sizes that do not fit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxbones.registry import FAST_COMPILE, get_entry, init_shapes
from jaxbones.train import checkpoint as ckpt_lib
from jaxbones.train import config as config_lib
from jaxbones.train import sharding
from jaxbones.train.loop import build_optimizer
from jaxbones.train.step import create_state, make_train_step
from jaxbones.train.tasks import get_task

STEPS = 3
MESHES = [(8, 1, 1), (2, 4, 1), (2, 2, 2), (1, 4, 2)]
TINY_VIT = {"embed_dim": 32, "depth": 1, "num_heads": 4, "patch_size": 4}
TINY_MAE = {
    **TINY_VIT,
    "decoder_embed_dim": 32,
    "decoder_depth": 1,
    "decoder_num_heads": 4,
    "scan": True,  # the scanned stacks' leading [depth] axis under the rules
}


# a few steps: compile time dominates, and XLA:CPU's fusion emitters triple it here
COMPILE = {**FAST_COMPILE, "xla_cpu_use_fusion_emitters": False}


def _config(model, task, mesh=None, image_size=16, **model_kwargs):
    c = config_lib.default_config()
    c.model, c.task, c.image_size, c.num_classes = model, task, image_size, 10
    c.global_batch_size = 16
    c.fsdp_min_size = 0  # split even the small arrays of tiny models over fsdp
    c.optimizer.lr, c.optimizer.warmup_steps = 1e-3, 1
    c.model_kwargs.update(model_kwargs)
    if mesh is not None:
        c.mesh.update(data=mesh[0], fsdp=mesh[1], tensor=mesh[2])
    return c


def _batch(size, b=16, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "image": rng.standard_normal((b, size, size, 3)).astype(np.float32),
        "label": rng.integers(0, 10, (b,)).astype(np.int32),
    }


def _setup(config):
    """(task, model, abstract TrainState, optimiser, schedule, initial state on the host) as
    the loop builds them; the initial state is computed once and placed on each mesh."""
    task = get_task(config.task)
    model = task.build_model(config, config.num_classes)
    init_vars = lambda r: task.init(model, config, r)
    abstract_params = jax.eval_shape(init_vars, jax.random.PRNGKey(0))["params"]
    tx, schedule, _ = build_optimizer(config, task, abstract_params, 10, 10)

    def init_fn(r):
        return create_state(init_vars(r), tx, jax.random.PRNGKey(1), False)

    abstract = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
    init = jax.jit(init_fn, compiler_options=COMPILE)
    host = jax.device_get(init(jax.random.PRNGKey(0)))
    return task, model, abstract, tx, schedule, host


def _train(config, setup, devices=None):
    """Losses of STEPS steps on ``config.mesh`` (or one device, ``devices``), the final
    state and the compiled step's HLO."""
    task, model, abstract, tx, schedule, host = setup
    mesh = sharding.make_mesh(config.mesh, devices)
    rules = get_entry(config.model).partition_rules
    sh = sharding.state_shardings(abstract, mesh, rules, config.fsdp_min_size)
    state = jax.device_put(host, sh)
    step = jax.jit(
        make_train_step(task, model, tx, schedule, config, mesh),
        in_shardings=(sh, sharding.batch_sharding(mesh)),
        out_shardings=(sh, None),
        donate_argnums=0,
        compiler_options=COMPILE,
    )
    losses = []
    batch = sharding.global_batch(_batch(config.image_size), mesh)
    step = step.lower(state, batch).compile()
    for _ in range(STEPS):  # the same batch: a classifier's loss falls
        state, m = step(state, batch)
        losses.append(float(m["loss"]))
    return losses, state, step.as_text()


def _same_curves(model, task, meshes, **kw):
    """{mesh: (losses, final state, HLO)} for one device (mesh None) and ``meshes``; every
    curve equals the one-device curve."""
    setup = _setup(_config(model, task, **kw))
    runs = {None: _train(_config(model, task, **kw), setup, jax.devices()[:1])}
    for mesh in meshes:
        runs[mesh] = _train(_config(model, task, mesh, **kw), setup)
        print(model, mesh, runs[mesh][0])
        # float32 reduction order differs between layouts
        np.testing.assert_allclose(runs[mesh][0], runs[None][0], rtol=2e-5, err_msg=f"{mesh}")
    return runs


@pytest.fixture(scope="module")
def vit_runs():
    return _same_curves("vit_tiny_patch16_224", "classification", MESHES, **TINY_VIT)


def test_vit_loss_curve_is_the_same_on_every_mesh(vit_runs):
    ref = vit_runs[None][0]
    assert ref[-1] < ref[0]
    # the tensor split is real on data 1 x fsdp 4 x tensor 2: per device, the attention
    # logits are [B/4, heads/2, L, L] and fc1's output [B/4 * L, hidden/2] (B 16, 4 heads,
    # L 17 tokens, hidden 128), where a replicated layout would have all heads / units
    hlo = vit_runs[(1, 4, 2)][2]
    assert "f32[4,2,17,17]{3,2,1,0} dot(" in hlo
    assert "f32[68,64]{1,0} dot(" in hlo and "f32[68,128]{1,0} dot(" not in hlo


def test_scanned_mae_loss_curve_is_the_same_on_every_mesh():
    runs = _same_curves("mae_vit_base_patch16_dec512d8b", "mae", MESHES, **TINY_MAE)
    assert len(set(runs[None][0])) == STEPS  # a new mask each step: the loss moves


def test_resnet_loss_curve_is_the_same_on_a_data_fsdp_mesh():
    kw = {"layers": (1, 1, 1, 1), "image_size": 32}  # ResNet's smallest input
    ref = _same_curves("resnet18", "classification", [(4, 2, 1)], **kw)[None][0]
    assert ref[-1] < ref[0]


# parameters of the three largest sizes in each transformer family's base variant on mesh
# data 1 x fsdp 4 x tensor 2: 'tensor' where the family's rules name heads / MLP units, 'fsdp'
# on the largest remaining dimension (ties: the last)
LARGEST = {
    "vit_base_patch16_224": {
        "blocks_0/mlp/fc1/kernel": P("fsdp", "tensor"),
        "blocks_0/mlp/fc2/kernel": P("tensor", "fsdp"),
        "blocks_0/attn/qkv/kernel": P("fsdp", "tensor"),
    },
    "mae_vit_base_patch16_dec512d8b": {
        "blocks/mlp/fc1/kernel": P(None, "fsdp", "tensor"),  # scanned: [depth, D, 4D]
        "blocks/mlp/fc2/kernel": P(None, "tensor", "fsdp"),
        "blocks/attn/qkv/kernel": P(None, "fsdp", "tensor"),
    },
    "swin_tiny_patch4_window7_224": {
        "layers_3_blocks_0/mlp/fc1/kernel": P("fsdp", "tensor"),
        "layers_3_blocks_0/mlp/fc2/kernel": P("tensor", "fsdp"),
        "layers_3_blocks_0/attn/qkv/kernel": P("fsdp", "tensor"),
    },
    "clip_vit_b16": {
        "text/token_embedding/embedding": P("fsdp", None),  # no rule: FSDP only
        "visual/blocks_0/mlp/fc1/kernel": P("fsdp", "tensor"),
        "visual/blocks_0/mlp/fc2/kernel": P("tensor", "fsdp"),
        "visual/blocks_0/attn/qkv/kernel": P("fsdp", "tensor"),
    },
    "sam_vit_b": {
        "image_encoder/pos_embed": P(None, None, None, "fsdp"),  # [1, 64, 64, 768]
        "image_encoder/blocks_0/mlp/fc1/kernel": P("fsdp", "tensor"),
        "image_encoder/blocks_0/mlp/fc2/kernel": P("tensor", "fsdp"),
        "image_encoder/blocks_0/attn/qkv/kernel": P("fsdp", "tensor"),
    },
}
TRANSFORMER_KWARGS = {"mae_vit_base_patch16_dec512d8b": {"scan": True}}


@pytest.mark.parametrize("name", list(LARGEST))
def test_largest_parameters_follow_the_family_rules(name):
    from flax import traverse_util

    shapes = init_shapes(name, **TRANSFORMER_KWARGS.get(name, {}))["params"]
    mesh = sharding.make_mesh({"data": 1, "fsdp": 4, "tensor": 2})
    rules = get_entry(name).partition_rules
    state = {"params": shapes, "opt_state": {"mu": shapes}}
    specs = sharding.state_shardings(state, mesh, rules)
    flat = traverse_util.flatten_dict(specs["params"], sep="/")
    size = traverse_util.flatten_dict(shapes, sep="/")
    numel = {k: int(np.prod(v.shape)) for k, v in size.items()}
    largest = sorted(set(numel.values()), reverse=True)[:3]
    for k, spec in LARGEST[name].items():
        print(name, k, size[k].shape, flat[k].spec)
        assert numel[k] in largest, f"{k} is not among the three largest sizes {largest}"
        assert flat[k].spec == spec, (k, flat[k].spec, spec)
    # the optimiser moments follow their parameters
    mu = traverse_util.flatten_dict(specs["opt_state"]["mu"], sep="/")
    assert all(mu[k].spec == flat[k].spec for k in flat)
    # convnets stay data / FSDP only
    assert get_entry("resnet50").partition_rules == ()


def test_checkpoint_restores_under_another_mesh(vit_runs, tmp_path):
    """data 8 -> fsdp 4 x data 2 -> tensor 2 x fsdp 4: each restore has the new mesh's
    shardings and the saved values."""
    config = _config("vit_tiny_patch16_224", "classification", (8, 1, 1), **TINY_VIT)
    state = vit_runs[(8, 1, 1)][1]
    task = get_task(config.task)
    model = task.build_model(config, config.num_classes)
    init_vars = lambda r: task.init(model, config, r)
    abstract_params = jax.eval_shape(init_vars, jax.random.PRNGKey(0))["params"]
    tx = build_optimizer(config, task, abstract_params, 10, 10)[0]
    abstract = jax.eval_shape(
        lambda r: create_state(init_vars(r), tx, r, False), jax.random.PRNGKey(0)
    )
    saved = jax.device_get(state.params)
    rules = get_entry(config.model).partition_rules
    for i, mesh in enumerate([(2, 4, 1), (1, 4, 2)]):
        m = sharding.make_mesh({"data": mesh[0], "fsdp": mesh[1], "tensor": mesh[2]})
        sh = sharding.state_shardings(abstract, m, rules, config.fsdp_min_size)
        ckpt = ckpt_lib.Checkpointer(str(tmp_path / str(i)), async_=False)
        ckpt.save(STEPS, state, None, config)
        ckpt.wait()
        target = jax.tree_util.tree_map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, sh
        )
        state, _, step = ckpt.restore_latest(target)
        ckpt.close()
        assert step == STEPS
        qkv = state.params["blocks_0"]["attn"]["qkv"]["kernel"]
        assert qkv.sharding.spec == sh.params["blocks_0"]["attn"]["qkv"]["kernel"].spec
        assert qkv.sharding.mesh.shape == m.shape
        jax.tree_util.tree_map(np.testing.assert_array_equal, jax.device_get(state.params), saved)
    assert qkv.sharding.spec == P("fsdp", "tensor")
    assert len(qkv.addressable_shards[0].data.reshape(-1)) == qkv.size // 8


def test_dcn_axes_are_the_major_part_and_bad_sizes_name_the_fix():
    devices = jax.devices()
    # 2 fake slices of 4 devices (CPU: consecutive runs); fsdp 2 within each slice
    m = sharding.make_mesh({"data": -1, "fsdp": 2, "dcn_data": 2}, devices)
    assert dict(m.shape) == {"data": 4, "fsdp": 2, "tensor": 1}
    ids = np.vectorize(lambda d: d.id)(m.devices)
    assert set(ids[:2].reshape(-1)) == {d.id for d in devices[:4]}  # data 0-1: slice 0
    m = sharding.make_mesh({"data": 1, "fsdp": -1, "dcn_fsdp": 2}, devices)
    assert dict(m.shape) == {"data": 1, "fsdp": 8, "tensor": 1}
    assert set(ids.reshape(-1)) == set(np.vectorize(lambda d: d.id)(m.devices).reshape(-1))
    with pytest.raises(ValueError, match="multiply to 6 but there are 8"):
        sharding.make_mesh({"data": 3, "fsdp": 2})
    with pytest.raises(ValueError, match="at most one may be -1"):
        sharding.make_mesh({"data": -1, "fsdp": -1})
    with pytest.raises(ValueError, match="do not split into 3"):
        sharding.make_mesh({"data": -1, "tensor": 3})
    with pytest.raises(ValueError, match="config.sharding is gone.*mesh.fsdp=-1"):
        config_lib.apply_overrides(config_lib.default_config(), ["--config.sharding=fsdp"])
    # a tensor split that does not divide the rule's dimension
    shapes = {"params": {"attn": {"qkv": {"kernel": jnp.zeros((6, 18))}}}}
    mesh = sharding.make_mesh({"data": 1, "tensor": 4, "fsdp": 2})
    with pytest.raises(ValueError, match="does not split over tensor=4"):
        sharding.state_shardings(shapes, mesh, get_entry("vit_base_patch16_224").partition_rules)
    # a batch splits over data x fsdp, not over tensor
    sharding.check_batch_size(8, 1, sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2}))
    with pytest.raises(ValueError, match="4 batch shards"):
        sharding.check_batch_size(6, 1, sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2}))


def test_tensor_group_across_processes_names_the_fix(monkeypatch):
    # 4 processes of 2 devices: a tensor group of 4 would join processes reading other examples
    monkeypatch.setattr(jax, "process_count", lambda: 4)
    monkeypatch.setattr(jax, "local_device_count", lambda: 2)
    with pytest.raises(ValueError, match="tensor to a divisor of 2"):
        sharding.check_batch_size(8, 1, sharding.make_mesh({"data": 2, "tensor": 4}))
    sharding.check_batch_size(8, 1, sharding.make_mesh({"data": 4, "tensor": 2}))
