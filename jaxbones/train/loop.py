"""``run(config)``: the training loop (see ``jaxbones.train.config`` for the keys).

Order of work: derive batch sizes and step counts -> build iterators, model and task ->
initialise the state directly into its shardings -> restore the newest checkpoint (or a
params-only ``init_from``) -> compile the step ahead of time (compile time, FLOPs for MFU)
-> loop: assemble the global batch, step, log every ``log_every``, eval, checkpoint ->
final eval, checkpoint, curves PNG. SIGTERM (preemption) saves a checkpoint at the current
step and returns. Returns a dict of the final train/eval metrics.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import signal
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from jaxbones.train import checkpoint as ckpt_lib
from jaxbones.train import inputs, optim, pretrained, sharding
from jaxbones.train.logger import MetricLogger, peak_flops, step_cost
from jaxbones.train.step import create_state, make_eval_step, make_train_step
from jaxbones.train.tasks import get_task

log = logging.getLogger("jaxbones.train")


def setup_compile_cache(path: str) -> None:
    if path:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(path))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _gather_data_states(state) -> list:
    """Every process's iterator state, on every process (JSON bytes via an all-gather)."""
    enc = ckpt_lib.encode_data_state(state)
    if jax.process_count() == 1:
        return [state]
    import json

    raw = np.frombuffer(json.dumps(enc).encode(), np.uint8)
    lens = multihost_utils.process_allgather(np.array([raw.size], np.int32))
    buf = np.zeros(int(np.max(lens)), np.uint8)
    buf[: raw.size] = raw
    allb = multihost_utils.process_allgather(buf)
    out = []
    for i in range(jax.process_count()):
        obj = json.loads(bytes(allb[i][: int(lens[i][0])]).decode())
        out.append(ckpt_lib.decode_data_state(obj))
    return out


class _Preemption:
    """Turns SIGTERM into a flag the loop checks after each step.

    With several processes the flag must be agreed on (one host may get the signal first), which
    takes a blocking all-gather: it runs only every ``every`` steps, at the same steps on every
    process, so the host does not wait on the devices after each step."""

    def __init__(self, every: int = 10):
        self.every = max(int(every), 1)
        self.flag = False
        self.prev = None
        try:
            self.prev = signal.signal(signal.SIGTERM, self._handler)
        except ValueError:  # not the main thread
            self.prev = None

    def _handler(self, signum, frame):
        self.flag = True

    def requested(self, step: int) -> bool:
        if jax.process_count() == 1:
            return self.flag
        if step % self.every:
            return False
        flags = multihost_utils.process_allgather(np.array([self.flag], np.int32))
        return bool(np.max(flags))

    def restore(self):
        if self.prev is not None:
            signal.signal(signal.SIGTERM, self.prev)


def _derive(config, info):
    n_train = info["splits"].get(config.train_split, 0) if "splits" in info else 0
    steps_per_epoch = max(n_train // config.global_batch_size, 1)
    num_steps = config.num_steps
    if num_steps <= 0:
        num_steps = max(math.ceil(config.num_epochs * steps_per_epoch), 1)
    return steps_per_epoch, num_steps


def evaluate(eval_fn, state, eval_iter, mesh, task):
    if eval_iter is None:
        return {}
    sums = None
    for batch in eval_iter:
        out = jax.device_get(eval_fn(state, sharding.global_batch(batch, mesh)))
        sums = out if sums is None else jax.tree_util.tree_map(np.add, sums, out)
    return task.finalize(sums) if sums is not None else {}


def run(config, train_iter=None, eval_iter=None) -> dict:
    """Trains ``config``; optional iterators replace the ones built from the config."""
    setup_compile_cache(config.compile_cache)
    # the model and the unset data settings come from the pretrained tag or registry entry
    settings = pretrained.data_settings(config)
    config = pretrained.resolve_config(config)
    main = jax.process_index() == 0
    task = get_task(config.task)
    sharding.check_batch_size(config.global_batch_size, config.accum_steps)
    mesh = sharding.make_mesh()

    built_train, built_eval, info = (None, None, {})
    if train_iter is None:
        built_train, built_eval, info = inputs.make_iterators(config)
        train_iter, eval_iter = built_train, built_eval if eval_iter is None else eval_iter
    num_classes = config.num_classes if config.num_classes > 0 else info.get("num_classes", 0)
    steps_per_epoch, num_steps = _derive(config, info)
    logger = MetricLogger(
        config.workdir if main else "", num_steps, enabled=main, progress=config.progress
    )
    n_dev, n_proc = jax.device_count(), jax.process_count()
    logger.info(
        f"topology: {n_proc} process(es), {n_dev} device(s) ({jax.devices()[0].device_kind}), "
        f"{jax.local_device_count()} local; global batch {config.global_batch_size} = "
        f"{config.global_batch_size // n_proc}/process = {config.global_batch_size // n_dev}"
        f"/device, accum_steps {config.accum_steps}; {num_steps} steps "
        f"({steps_per_epoch}/epoch), sharding {config.sharding}"
    )
    logger.info(pretrained.format_settings(settings))

    # Model, optimiser and the state, initialised straight into its shardings.
    channels = int(info.get("image_shape", (0, 0, 3))[-1]) if info else 3
    model = task.build_model(config, num_classes, channels)
    rng = jax.random.PRNGKey(config.seed)
    init_rng, state_rng = jax.random.split(rng)
    init_vars = functools.partial(task.init, model, config, channels=channels)
    abstract_vars = jax.eval_shape(init_vars, init_rng)
    tx, schedule, groups = optim.make_optimizer(
        config.optimizer,
        abstract_vars["params"],
        num_steps,
        steps_per_epoch,
        config.global_batch_size,
    )
    logger.info(optim.format_groups(groups, optim_peak(schedule, num_steps)))

    def init_fn(r):
        return create_state(init_vars(r), tx, state_rng, config.ema_decay > 0)

    abstract_state = jax.eval_shape(init_fn, init_rng)
    state_sh = sharding.state_shardings(abstract_state, mesh, config.sharding, config.fsdp_min_size)
    state = jax.jit(init_fn, out_shardings=state_sh)(init_rng)

    ckpt = None
    start = 0
    init_report = None
    if config.workdir:
        ckpt = ckpt_lib.Checkpointer(
            config.workdir, config.keep_ckpts, config.best_metric, task.best_mode, config.async_ckpt
        )
        target = jax.tree_util.tree_map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
            abstract_state,
            state_sh,
        )
        restored = ckpt.restore_latest(target)
        if restored is not None:
            state, data_states, start = restored
            if hasattr(train_iter, "set_state") and data_states:
                train_iter.set_state(data_states[jax.process_index()])
            logger.info(f"resumed from {ckpt.dir} step {start}")
    if start == 0 and config.init_from:
        params, report = ckpt_lib.load_params(
            config.init_from, jax.device_get(state.params), config.model, task.params_prefix
        )
        params = jax.device_put(params, state_sh.params)
        state = state.replace(params=params)
        if config.ema_decay > 0:
            state = state.replace(ema_params=jax.tree_util.tree_map(jnp.copy, params))
        logger.info(f"init_from {config.init_from}: {report}")
        init_report = report
    if start == 0 and config.pretrained:
        state, init_report = pretrained.init_from_pretrained(
            state, config, task, num_classes, channels
        )

    # Compile ahead of time: one trace (asserted), compile time and FLOPs for MFU.
    step_fn = make_train_step(task, model, tx, schedule, config, mesh)
    chex.clear_trace_counter()  # a fresh step function per run; it must trace exactly once
    step_fn = chex.assert_max_traces(step_fn, n=1)
    batch_sh = sharding.batch_sharding(mesh)
    jitted = jax.jit(
        step_fn, in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, None), donate_argnums=0
    )
    eval_fn = jax.jit(make_eval_step(task, model, config), in_shardings=(state_sh, batch_sh))

    preempt = _Preemption(config.preemption_check_every)
    it = iter(train_iter)
    compiled = None
    flops = None
    peak = peak_flops(jax.devices()[0])
    last = {}
    eval_metrics = {}
    t_log, s_log = time.perf_counter(), start
    stopped = None
    first_local = None
    logger.start(start)
    step = start
    try:
        while step < num_steps:
            local = next(it)
            if first_local is None:
                first_local = local  # kept for pictures (e.g. MAE reconstructions)
            batch = sharding.global_batch(local, mesh)
            if compiled is None:
                t0 = time.perf_counter()
                compiled = jitted.lower(state, batch).compile()
                compile_s = time.perf_counter() - t0
                flops = step_cost(compiled)
                logger.info(
                    f"compiled train step in {compile_s:.1f}s"
                    + (f", {flops / 1e9:.2f} GFLOPs/step" if flops else "")
                )
                logger.write(step, "compile", {"compile_seconds": compile_s})
            state, metrics = compiled(state, batch)
            step += 1
            if step == config.debug_signal_at_step:
                os.kill(os.getpid(), getattr(signal, config.debug_signal))
            if step % config.log_every == 0 or step == num_steps:
                m = jax.device_get(metrics)
                dt = time.perf_counter() - t_log
                ips = (step - s_log) * config.global_batch_size / max(dt, 1e-9) / n_dev
                m = {k: float(v) for k, v in m.items()}
                m["images_per_sec_per_device"] = ips
                if flops and peak:
                    # cost_analysis counts the whole (SPMD) step program per device
                    m["mfu"] = flops * (step - s_log) / max(dt, 1e-9) / peak
                t_log, s_log = time.perf_counter(), step
                logger.write(step, "train", m)
                logger.progress(step, m)
                last = m
                if m["bad_steps"] >= config.max_bad_steps:
                    stopped = f"{int(m['bad_steps'])} non-finite steps (max_bad_steps)"
            do_eval = config.eval_every > 0 and step % config.eval_every == 0
            if do_eval and step < num_steps:
                eval_metrics = evaluate(eval_fn, state, eval_iter, mesh, task)
                logger.write(step, "eval", eval_metrics)
                logger.info(f"eval step {step}: {eval_metrics}")
            preempted = preempt.requested(step)
            do_ckpt = config.ckpt_every > 0 and step % config.ckpt_every == 0
            if ckpt is not None and (do_ckpt or preempted) and step < num_steps:
                data_states = _gather_data_states(
                    train_iter.get_state() if hasattr(train_iter, "get_state") else None
                )
                ckpt.save(
                    step,
                    state,
                    data_states,
                    config,
                    metrics=eval_metrics if do_eval else None,
                    force=preempted,
                )
            if preempted:
                stopped = "SIGTERM (preemption): checkpoint saved"
            if stopped:
                break
        if stopped is None:
            eval_metrics = evaluate(eval_fn, state, eval_iter, mesh, task)
            if eval_metrics:
                logger.write(step, "eval", eval_metrics)
                logger.info(f"final eval step {step}: {eval_metrics}")
            if ckpt is not None:
                data_states = _gather_data_states(
                    train_iter.get_state() if hasattr(train_iter, "get_state") else None
                )
                ckpt.save(
                    step, state, data_states, config, metrics=eval_metrics or None, force=True
                )
    finally:
        preempt.restore()
        if ckpt is not None:
            ckpt.close()
        png = logger.plot() if config.plot else None
        logger.close()
    if stopped:
        logger.info(f"stopped at step {step}: {stopped}")
    out = {f"train_{k}": v for k, v in last.items()}
    out.update({f"eval_{k}": v for k, v in eval_metrics.items()})
    out["step"] = step
    out["stopped"] = stopped or ""
    if png:
        out["curves_png"] = png
    out["_state"] = state
    out["_model"] = model
    out["_config"] = config
    out["_history"] = logger.history
    if init_report:
        out["init_from"] = init_report
    out["_eval_batch"] = first_local
    return out


def optim_peak(schedule, num_steps) -> float:
    return float(max(schedule(s) for s in np.linspace(0, max(num_steps - 1, 0), 50).astype(int)))
