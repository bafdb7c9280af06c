"""The train state and the jitted, donated train / eval steps.

``TrainState`` attributes: step (int32), params (f32), batch_stats ({} without BatchNorm),
opt_state, ema_params ({} when EMA is off), rng (the run's base key; each step folds in its
step number, so the streams 'dropout', 'drop_path', 'mask' never repeat and a resumed run
draws the same numbers), bad_steps (non-finite steps skipped so far).

``make_train_step(task, model, tx, schedule, config, mesh)`` returns the pure function
``(state, batch) -> (state, metrics)``: gradient accumulation as a ``lax.scan`` over
``config.accum_steps`` micro-batches (example i goes to micro-batch i % k, so every
micro-batch stays spread over all batch shards), an update that is skipped when the loss or the
gradient norm is not finite, and an EMA of the parameters; uint8 images (the input's
``image_dtype='uint8'``) are normalised with the resolved config's mean and std first.
``make_eval_step`` returns
``(state, batch) -> sums``.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxbones.data.pipeline import normalize_pixels
from jaxbones.train.sharding import BATCH_AXES


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: dict
    batch_stats: dict
    opt_state: optax.OptState
    ema_params: dict
    rng: jax.Array
    bad_steps: jax.Array

    def variables(self, ema: bool = False) -> dict:
        v = {"params": self.ema_params if ema and self.ema_params else self.params}
        if self.batch_stats:
            v["batch_stats"] = self.batch_stats
        return v


def create_state(variables, tx, rng, ema: bool) -> TrainState:
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        ema_params=jax.tree_util.tree_map(jnp.copy, params) if ema else {},
        rng=rng,
        bad_steps=jnp.zeros((), jnp.int32),
    )


def make_train_step(task, model, tx, schedule, config, mesh):
    accum = int(config.accum_steps)
    ema_decay = float(config.ema_decay)

    def loss_fn(params, batch_stats, batch, rng):
        variables = {"params": params}
        if batch_stats:
            variables["batch_stats"] = batch_stats
        loss, metrics, new_bs = task.loss(model, variables, batch, rng, config)
        return loss, (metrics, new_bs)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    batch_sh = NamedSharding(mesh, P(BATCH_AXES))

    def train_step(state: TrainState, batch):
        # examples split over the batch axes whatever the caller's input sharding (an AOT
        # lowering from abstract shapes); every device of a 'tensor' group sees the same ones
        batch = jax.tree_util.tree_map(
            lambda x: jax.lax.with_sharding_constraint(x, batch_sh) if x.ndim else x, batch
        )
        if batch["image"].dtype == jnp.uint8:  # config.image_dtype='uint8' input
            if not (config.mean and config.std):
                raise ValueError(
                    "uint8 images are normalised with config.mean and config.std, which are "
                    "unset: resolve the config first (jaxbones.train.pretrained.resolve_config)"
                )
            batch = {**batch, "image": normalize_pixels(batch["image"], config.mean, config.std)}
        rng = jax.random.fold_in(state.rng, state.step)
        if accum == 1:
            (loss, (metrics, bs)), grads = grad_fn(state.params, state.batch_stats, batch, rng)
        else:
            # [B, ...] -> [k, B/k, ...] with micro-batch j = examples j, j+k, ...
            def split(x):
                x = x.reshape((x.shape[0] // accum, accum) + x.shape[1:]).swapaxes(0, 1)
                spec = P(None, BATCH_AXES, *([None] * (x.ndim - 2)))
                return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))

            micro = jax.tree_util.tree_map(split, batch)

            def body(carry, xs):
                bs, gsum = carry
                i, mb = xs
                (loss, (m, bs)), g = grad_fn(state.params, bs, mb, jax.random.fold_in(rng, i))
                return (bs, jax.tree_util.tree_map(jnp.add, gsum, g)), (loss, m)

            zeros = jax.tree_util.tree_map(jnp.zeros_like, state.params)
            (bs, gsum), (losses, ms) = jax.lax.scan(
                body, (state.batch_stats, zeros), (jnp.arange(accum), micro)
            )
            grads = jax.tree_util.tree_map(lambda g: g / accum, gsum)
            loss = jnp.mean(losses)
            metrics = jax.tree_util.tree_map(jnp.mean, ms)
        gnorm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(gnorm)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)

        def keep(new, old):  # skip the whole update on a non-finite step
            return jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, old)

        params = keep(params, state.params)
        ema = state.ema_params
        if ema_decay > 0:
            ema = jax.tree_util.tree_map(
                lambda e, p: e * ema_decay + p * (1.0 - ema_decay), ema, params
            )
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            batch_stats=keep(bs, state.batch_stats),
            opt_state=keep(opt_state, state.opt_state),
            ema_params=keep(ema, state.ema_params),
            bad_steps=state.bad_steps + (~finite).astype(jnp.int32),
        )
        metrics = dict(metrics)
        metrics.update(
            loss=loss, grad_norm=gnorm, lr=schedule(state.step), bad_steps=new_state.bad_steps
        )
        return new_state, metrics

    return train_step


def make_eval_step(task, model, config):
    def eval_step(state: TrainState, batch):
        return task.eval_sums(model, state.variables(ema=config.eval_ema), batch, config)

    return eval_step
