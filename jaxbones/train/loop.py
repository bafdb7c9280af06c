"""``run(config)``: the training loop (see ``jaxbones.train.config`` for the keys).

Order of work: derive batch sizes and step counts -> build iterators, model and task ->
initialise the state directly into its shardings -> restore the newest checkpoint (or a
params-only ``init_from``) -> compile the step ahead of time (compile time, FLOPs for MFU)
-> loop: assemble the global batch, step, log every ``log_every``, run the evaluators of
``config.evals`` at their periods (``jaxbones.train.evaluators``), checkpoint -> every
evaluator, checkpoint, curves PNG. SIGTERM (preemption) saves a checkpoint at the current
step and returns. Returns a ``RunResult`` (final metrics, state, model, history).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import signal
import time
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from jaxbones.hardware import peak_flops, step_cost
from jaxbones.registry import FAST_COMPILE, get_entry
from jaxbones.train import checkpoint as ckpt_lib
from jaxbones.train import evaluators, inputs, optim, pretrained, sharding
from jaxbones.train.logger import MetricLogger
from jaxbones.train.step import TrainState, create_state, make_eval_step, make_train_step
from jaxbones.train.tasks import get_task

log = logging.getLogger("jaxbones.train")


def setup_compile_cache(path: str) -> None:
    if path:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(path))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


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


def head_paths(task, config, num_classes: int, channels: int, params) -> set[str]:
    """Paths of the parameters whose shape follows the number of classes (the classifier
    head), found by building the task's model once more with one class more."""
    other = task.build_model(config, num_classes + 1, channels)
    init = functools.partial(task.init, other, config, channels=channels)
    shapes = optim.flat_shapes(jax.eval_shape(init, jax.random.PRNGKey(0))["params"])
    return {p for p, s in optim.flat_shapes(params).items() if shapes.get(p) != s}


def build_optimizer(config, task, params, num_steps: int, steps_per_epoch: int):
    """``(tx, schedule, groups)`` of ``config.optimizer`` for the task's ``params``, with the
    weight-decay exemptions and layer ids the model's family declares in the registry."""
    return optim.make_optimizer(
        config.optimizer,
        params,
        num_steps,
        steps_per_epoch,
        config.global_batch_size,
        groups_of=get_entry(config.model).param_groups,
        prefix=task.params_prefix,
    )


@dataclasses.dataclass
class RunResult:
    """What ``run`` returns.

    Attributes:
      metrics: the last logged train metrics (``train_*``), the final eval metrics
        (``eval_*``) and ``step``; recipes may add their own (``zero_shot_accuracy``).
      stopped: why the run ended early ('' when it ran to ``num_steps``).
      state: the final ``TrainState``; model: the Linen module it trains; config: the run's.
      history: every row written to ``metrics.jsonl`` (process 0).
      init_from: ``load_params``' report ({} without ``config.init_from``).
      curves_png: the path of ``curves.png`` ('' when none was written).
    """

    metrics: dict
    stopped: str
    state: TrainState
    model: Any
    config: Any
    history: list
    init_from: dict = dataclasses.field(default_factory=dict)
    curves_png: str = ""

    def summary(self) -> dict:
        """The JSON-able outcome ``launch.main`` prints on its ``final:`` line."""
        out = {**self.metrics, "stopped": self.stopped}
        if self.curves_png:
            out["curves_png"] = self.curves_png
        if self.init_from:
            out["init_from"] = self.init_from
        return out


@dataclasses.dataclass
class _Inputs:
    train: Any
    eval: Any
    num_classes: int
    channels: int
    steps_per_epoch: int
    num_steps: int


def _inputs(config, train_iter, eval_iter) -> _Inputs:
    """The iterators (``config``'s, unless given) and the step counts they imply."""
    info = {}
    if train_iter is None:
        built_train, built_eval, info = inputs.make_iterators(config)
        train_iter, eval_iter = built_train, built_eval if eval_iter is None else eval_iter
    num_classes = config.num_classes if config.num_classes > 0 else info.get("num_classes", 0)
    channels = int(info.get("image_shape", (0, 0, 3))[-1]) if info else 3
    steps_per_epoch, num_steps = _derive(config, info)
    return _Inputs(train_iter, eval_iter, num_classes, channels, steps_per_epoch, num_steps)


def _split_data(config, data: _Inputs, split: str):
    """An evaluator's data: the run's eval iterable for its eval split, else that split's."""
    if split in ("", config.eval_split):
        return data.eval
    return inputs.make_eval_iterable(config, split)


def _log_topology(logger, config, data: _Inputs, mesh) -> None:
    n_dev, n_proc = jax.device_count(), jax.process_count()
    gbs = config.global_batch_size
    logger.info(
        f"topology: {n_proc} process(es), {n_dev} device(s) ({jax.devices()[0].device_kind}), "
        f"{jax.local_device_count()} local; global batch {gbs} = {gbs // n_proc}/process = "
        f"{gbs // sharding.batch_size_of(mesh)}/batch shard (data x fsdp), accum_steps {config.accum_steps}; {data.num_steps} steps "
        f"({data.steps_per_epoch}/epoch), mesh {dict(mesh.shape)}"
    )


@dataclasses.dataclass
class _Setup:
    state: TrainState
    shardings: Any  # of the state
    abstract_state: Any
    abstract_params: Any
    tx: Any
    schedule: Any


def _plan_state(config, task, model, data: _Inputs, mesh):
    """(setup without a state, init function, init key, parameter groups): the optimiser and
    the abstract state with its shardings, computed without touching device memory."""
    init_rng, state_rng = jax.random.split(jax.random.PRNGKey(config.seed))
    init_vars = functools.partial(task.init, model, config, channels=data.channels)
    abstract_params = jax.eval_shape(init_vars, init_rng)["params"]
    tx, schedule, groups = build_optimizer(
        config, task, abstract_params, data.num_steps, data.steps_per_epoch
    )

    def init_fn(r):
        return create_state(init_vars(r), tx, state_rng, config.ema_decay > 0)

    abstract_state = jax.eval_shape(init_fn, init_rng)
    state_sh = sharding.state_shardings(
        abstract_state, mesh, get_entry(config.model).partition_rules, config.fsdp_min_size
    )
    setup = _Setup(None, state_sh, abstract_state, abstract_params, tx, schedule)
    return setup, init_fn, init_rng, groups


def _init_state(config, task, model, data: _Inputs, mesh, logger) -> _Setup:
    """The optimiser (its parameter-group table logged) and the state, initialised straight
    into its shardings."""
    setup, init_fn, init_rng, groups = _plan_state(config, task, model, data, mesh)
    logger.info(optim.format_groups(groups, optim_peak(setup.schedule, data.num_steps)))
    # the init runs once: on CPU XLA's backend passes cost minutes of compile time and change
    # the values only by float rounding (an ulp in a few percent of the weights)
    options = FAST_COMPILE if jax.default_backend() == "cpu" else None
    setup.state = jax.jit(init_fn, out_shardings=setup.shardings, compiler_options=options)(
        init_rng
    )
    return setup


def _restore_or_init_from(config, task, data: _Inputs, setup: _Setup, ckpt, logger):
    """(state, start step, init report): the newest checkpoint of this run if there is one
    (with the data iterator's position), else a ``pretrained`` tag's weights, else a
    params-only ``init_from``, else fresh."""
    state = setup.state
    if ckpt is not None:
        target = jax.tree_util.tree_map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
            setup.abstract_state,
            setup.shardings,
        )
        restored = ckpt.restore_latest(target)
        if restored is not None:
            state, data_state, start = restored
            if hasattr(data.train, "set_state") and data_state is not None:
                data.train.set_state(data_state)
            logger.info(f"resumed from {ckpt.dir} step {start}")
            return state, start, {}
    if config.pretrained and config.init_from:
        raise ValueError(
            f"config.pretrained={config.pretrained!r} and config.init_from="
            f"{config.init_from!r} both give the initial weights: set one of them"
        )
    if config.pretrained:
        state, report = pretrained.init_from_pretrained(
            state, config, task, data.num_classes, data.channels
        )
        return state, 0, report
    if not config.init_from:
        return state, 0, {}
    params, report = ckpt_lib.load_params(
        config.init_from,
        jax.device_get(state.params),
        config.model,
        task.params_prefix,
        head=head_paths(task, config, data.num_classes, data.channels, setup.abstract_params),
        may_stay_fresh=config.init_fresh,
    )
    params = jax.device_put(params, setup.shardings.params)
    state = state.replace(params=params)
    if config.ema_decay > 0:
        state = state.replace(ema_params=jax.tree_util.tree_map(jnp.copy, params))
    logger.info(f"init_from {config.init_from}: {report}")
    return state, 0, report


def _step_functions(config, task, model, setup: _Setup, mesh):
    """The jitted, donated train step (asserted to trace once) and the jitted eval step."""
    step_fn = make_train_step(task, model, setup.tx, setup.schedule, config, mesh)
    chex.clear_trace_counter()  # a fresh step function per run; it must trace exactly once
    step_fn = chex.assert_max_traces(step_fn, n=1)
    batch_sh = sharding.batch_sharding(mesh)
    train_step = jax.jit(
        step_fn,
        in_shardings=(setup.shardings, batch_sh),
        out_shardings=(setup.shardings, None),
        donate_argnums=0,
    )
    eval_step = jax.jit(
        make_eval_step(task, model, config), in_shardings=(setup.shardings, batch_sh)
    )
    return train_step, eval_step


def abstract_train_step(config, mesh, num_classes: int, channels: int = 3, num_steps: int = 1):
    """``(train_step, abstract_state)`` of ``config``'s run on ``mesh`` without data or device
    memory: the same jitted, donated step and state shardings as ``run``, the state as
    ``jax.ShapeDtypeStruct``s carrying their shardings. ``scripts/aot.py`` lowers and compiles
    it for a TPU topology on a host without TPUs. ``num_steps`` only sets the learning-rate
    schedule, which changes neither memory nor FLOPs."""
    config = pretrained.resolve_config(config)
    task = get_task(config.task)
    model = task.build_model(config, num_classes, channels)
    data = _Inputs(None, None, num_classes, channels, max(num_steps, 1), max(num_steps, 1))
    setup, _, _, _ = _plan_state(config, task, model, data, mesh)
    train_step, _ = _step_functions(config, task, model, setup, mesh)
    abstract_state = jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        setup.abstract_state,
        setup.shardings,
    )
    return train_step, abstract_state


def _compile(train_step, state, batch, logger, step):
    """Compiles the train step ahead of time for the first batch: (compiled, FLOPs/step)."""
    t0 = time.perf_counter()
    compiled = train_step.lower(state, batch).compile()
    seconds = time.perf_counter() - t0
    flops = step_cost(compiled)
    logger.info(
        f"compiled train step in {seconds:.1f}s"
        + (f", {flops / 1e9:.2f} GFLOPs/step" if flops else "")
    )
    logger.write(step, "compile", {"compile_seconds": seconds})
    return compiled, flops


class _Throughput:
    """Images/s per device and MFU over the steps since the last measurement."""

    def __init__(self, step: int, global_batch_size: int, dtype: str):
        self.batch, self.devices = global_batch_size, jax.device_count()
        self.peak = peak_flops(jax.devices()[0].device_kind, dtype)
        self.flops = None
        self.reset(step)

    def reset(self, step: int):
        self.t, self.step = time.perf_counter(), step

    def measure(self, step: int) -> dict:
        dt = max(time.perf_counter() - self.t, 1e-9)
        n = step - self.step
        out = {"images_per_sec_per_device": n * self.batch / dt / self.devices}
        if self.flops and self.peak:
            # cost_analysis counts the whole (SPMD) step program per device
            out["mfu"] = self.flops * n / dt / self.peak
        self.reset(step)
        return out


def _save(ckpt, step, state, train_iter, config, metrics, force):
    """Checkpoints ``state`` with the data stream's position (a collective: all processes
    call it at the same steps). The position is global, the same on every process, so the
    checkpoint resumes on any number of processes."""
    if ckpt is None:
        return
    data_state = train_iter.get_state() if hasattr(train_iter, "get_state") else None
    ckpt.save(step, state, data_state, config, metrics=metrics, force=force)


def _run_evals(evals, state, step, logger, what) -> dict[str, dict]:
    """Runs ``evals`` and logs each one's metrics under its name; {name: metrics}."""
    out = {}
    for ev in evals:
        out[ev.name] = ev.run(state, step)
        if out[ev.name]:
            logger.write(step, ev.name, out[ev.name])
            logger.info(f"{what} {ev.name} step {step}: {out[ev.name]}")
    return out


def _train_steps(config, state, start, data: _Inputs, mesh, train_step, evals, logger, ckpt):
    """The step loop: assemble the global batch, step, log every ``log_every``, run each
    evaluator at its period, checkpoint every ``ckpt_every`` or on SIGTERM; at the end every
    evaluator and a checkpoint (a run restored at its last step only evaluates). Returns (state, step, last train metrics, {evaluator:
    metrics} of the last evaluations, stopped)."""
    num_steps = data.num_steps
    preempt = _Preemption(config.preemption_check_every)
    it = iter(data.train)
    compiled = None
    throughput = _Throughput(start, config.global_batch_size, config.dtype)
    last, results, stopped = {}, {}, None
    logger.start(start)
    step = start
    try:
        while step < num_steps:
            batch = sharding.global_batch(next(it), mesh)
            if compiled is None:
                compiled, throughput.flops = _compile(train_step, state, batch, logger, step)
                throughput.reset(step)
            state, metrics = compiled(state, batch)
            step += 1
            if step == config.debug_signal_at_step:
                os.kill(os.getpid(), getattr(signal, config.debug_signal))
            if step % config.log_every == 0 or step == num_steps:
                last = {k: float(v) for k, v in jax.device_get(metrics).items()}
                last.update(throughput.measure(step))
                logger.write(step, "train", last)
                logger.progress(step, last)
                if last["bad_steps"] >= config.max_bad_steps:
                    stopped = f"{int(last['bad_steps'])} non-finite steps (max_bad_steps)"
            due = [ev for ev in evals if ev.due(step)] if step < num_steps else []
            ran = _run_evals(due, state, step, logger, "eval")
            results.update(ran)
            preempted = preempt.requested(step)
            do_ckpt = config.ckpt_every > 0 and step % config.ckpt_every == 0
            if (do_ckpt or preempted) and step < num_steps:
                metrics = ran.get("eval")  # the main evaluation ranks checkpoints
                _save(ckpt, step, state, data.train, config, metrics, force=preempted)
            if preempted:
                stopped = "SIGTERM (preemption): checkpoint saved"
            if stopped:
                break
        if stopped is None:
            results.update(_run_evals(evals, state, step, logger, "final"))
            if step > start:  # a finished run started again only evaluates: its step is saved
                metrics = results.get("eval") or None
                _save(ckpt, step, state, data.train, config, metrics, force=True)
    finally:
        preempt.restore()
    return state, step, last, results, stopped


def run(config, train_iter=None, eval_iter=None) -> RunResult:
    """Trains ``config``; optional iterators replace the ones built from the config."""
    setup_compile_cache(config.compile_cache)
    # the model and the unset data settings come from the pretrained tag or registry entry
    settings = pretrained.data_settings(config)
    config = pretrained.resolve_config(config)
    task = get_task(config.task)
    mesh = sharding.make_mesh(config.mesh)
    sharding.check_batch_size(config.global_batch_size, config.accum_steps, mesh)
    data = _inputs(config, train_iter, eval_iter)
    main = jax.process_index() == 0
    logger = MetricLogger(
        config.workdir if main else "", data.num_steps, enabled=main, progress=config.progress
    )
    _log_topology(logger, config, data, mesh)
    logger.info(pretrained.format_settings(settings))
    model = task.build_model(config, data.num_classes, data.channels)
    setup = _init_state(config, task, model, data, mesh, logger)
    ckpt = None
    if config.workdir:
        ckpt = ckpt_lib.Checkpointer(
            config.workdir, config.keep_ckpts, config.best_metric, task.best_mode, config.async_ckpt
        )
    png = None
    try:
        state, start, init_report = _restore_or_init_from(config, task, data, setup, ckpt, logger)
        train_step, eval_step = _step_functions(config, task, model, setup, mesh)
        context = evaluators.Context(
            config, task, model, mesh, eval_step, functools.partial(_split_data, config, data), main
        )
        state, step, last, results, stopped = _train_steps(
            config,
            state,
            start,
            data,
            mesh,
            train_step,
            evaluators.make_evaluators(context),
            logger,
            ckpt,
        )
    finally:
        if ckpt is not None:
            ckpt.close()
        png = logger.plot() if config.plot else None
        logger.close()
    if stopped:
        logger.info(f"stopped at step {step}: {stopped}")
    metrics = {f"train_{k}": v for k, v in last.items()}
    for name, values in results.items():
        metrics.update({f"{name}_{k}": v for k, v in values.items()})
    metrics["step"] = step
    return RunResult(
        metrics=metrics,
        stopped=stopped or "",
        state=state,
        model=model,
        config=config,
        history=logger.history,
        init_from=init_report,
        curves_png=png or "",
    )


def optim_peak(schedule, num_steps) -> float:
    return float(max(schedule(s) for s in np.linspace(0, max(num_steps - 1, 0), 50).astype(int)))
