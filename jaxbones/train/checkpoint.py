"""Orbax checkpoints: train state + data-iterator state + config, async, last-N plus best.

``Checkpointer(workdir, keep, best_metric, best_mode, async_)``:
  save(step, state, data_state, config, metrics=None): ``data_state`` is the data stream's
    position (a JSON-able dict, the same on every process: see ``jaxbones.data.stream``) saved
    by orbax next to the state; the config is saved as JSON with the model name, for
    params-only restores.
  restore_latest(abstract_state): (state, data_state, step) from the newest checkpoint that
    restores; a corrupt or partial one is skipped with a warning. None if there is none.
  The state restores onto whatever shardings ``abstract_state`` carries (another device
  count or another ``config.mesh`` works: orbax reshards; tests/test_mesh.py).
``load_params(path, target_params, model, prefix, head, may_stay_fresh)``: params-only
  restore for fine-tuning; whatever stays at its initial value is allowed and named.
``restore_variables(path)``: a run's params and batch_stats (e.g. to export them).
"""

from __future__ import annotations

import logging
import os
import re
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

log = logging.getLogger("jaxbones.train")


def _as_dict(state) -> dict:
    return {
        "step": state.step,
        "params": state.params,
        "batch_stats": state.batch_stats,
        "opt_state": state.opt_state,
        "ema_params": state.ema_params,
        "rng": state.rng,
        "bad_steps": state.bad_steps,
    }


class Checkpointer:
    def __init__(self, workdir, keep=3, best_metric="", best_mode="max", async_=True):
        self.dir = os.path.abspath(os.path.join(os.path.expanduser(workdir), "checkpoints"))
        policies = [ocp.checkpoint_managers.LatestN(n=keep)]
        if best_metric:
            policies.append(
                ocp.checkpoint_managers.BestN(
                    get_metric_fn=lambda m: m[best_metric],
                    reverse=best_mode == "max",
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        self.best_metric = best_metric
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
            enable_async_checkpointing=async_,
            create=True,
            cleanup_tmp_directories=True,
        )
        self.mngr = ocp.CheckpointManager(self.dir, options=options)

    def save(self, step, state, data_state, config, metrics=None, force=False):
        meta = {"model": config.model, "task": config.task, "config": config.to_json()}
        if metrics is not None and self.best_metric not in metrics:
            metrics = None
        self.mngr.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(_as_dict(state)),
                data=ocp.args.JsonSave({"stream": data_state}),
                meta=ocp.args.JsonSave(meta),
            ),
            metrics=metrics,
            force=force,
        )

    def wait(self):
        self.mngr.wait_until_finished()

    def close(self):
        self.mngr.wait_until_finished()
        self.mngr.close()

    def restore_latest(self, abstract_state):
        """Newest restorable (state, data_state, step); skips corrupt steps; None if none."""
        self.mngr.reload()
        for step in sorted(self.mngr.all_steps(), reverse=True):
            try:
                out = self.mngr.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(_as_dict(abstract_state)),
                        data=ocp.args.JsonRestore(),
                    ),
                )
            except Exception as e:  # noqa: BLE001 - any failure means: corrupt / partial: fall back to an older one
                warnings.warn(
                    f"checkpoint step {step} in {self.dir} cannot be restored "
                    f"({type(e).__name__}: {str(e)[:200]}); trying an older one",
                    stacklevel=2,
                )
                continue
            d = out["state"]
            state = abstract_state.replace(**d)
            if "stream" not in out["data"]:
                raise ValueError(
                    f"{self.dir} step {step} holds per-process data iterator states of an "
                    "earlier jaxbones; its data position cannot be resumed. Start a new workdir "
                    f"with --config.init_from={self.dir}/{step} to keep the parameters."
                )
            return state, out["data"]["stream"], step
        return None


def _resolve(path: str) -> tuple[str, int | None]:
    """'<workdir>', '<workdir>/checkpoints' or '<...>/checkpoints/<step>' -> (dir, step)."""
    path = os.path.abspath(os.path.expanduser(path))
    base = os.path.basename(path)
    if base.isdigit():
        return os.path.dirname(path), int(base)
    if os.path.isdir(os.path.join(path, "checkpoints")):
        return os.path.join(path, "checkpoints"), None
    return path, None


def _summary(paths, n: int = 8) -> str:
    """'head (2), fc_norm (2)': parameter paths counted per top-level module."""
    counts: dict[str, int] = {}
    for p in paths:
        counts[p.split("/")[0]] = counts.get(p.split("/")[0], 0) + 1
    items = [f"{k} ({v})" for k, v in counts.items()]
    return ", ".join(items[:n]) + (f", ... {len(items) - n} more" if len(items) > n else "")


def restore_variables(path) -> tuple[dict, int, dict]:
    """``({'params', 'batch_stats'?}, step, meta)`` of a run's checkpoint (``path``: its
    workdir, its checkpoints dir or one step's dir) as numpy arrays, whatever topology saved
    it (shapes from the checkpoint's own metadata)."""
    directory, step = _resolve(path)
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"config.init_from={path!r}: no checkpoint directory {directory}; point it at the "
            "pretraining run's workdir (which holds checkpoints/<step>)"
        )
    mngr = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(read_only=True))
    step = mngr.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"config.init_from={path!r}: {directory} has no checkpoint")
    meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    meta = meta or {}
    # Restore onto this process's first device whatever topology saved it (shapes from the
    # checkpoint's own metadata).
    item = os.path.join(directory, str(step), "state")
    ckptr = ocp.StandardCheckpointer()
    md = ckptr.metadata(item)
    tree = getattr(getattr(md, "item_metadata", md), "tree", getattr(md, "item_metadata", md))
    dev = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree_util.tree_map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=dev), tree
    )
    state = jax.device_get(ckptr.restore(item, abstract))
    mngr.close()
    variables = {"params": state["params"]}
    if state.get("batch_stats"):
        variables["batch_stats"] = state["batch_stats"]
    return variables, step, meta


def load_params(path, target_params, target_model: str, prefix=(), head=(), may_stay_fresh=()):
    """Params-only restore for fine-tuning: every parameter of the model comes from the
    checkpoint, except the ones allowed to keep their initial values, which are named.

    Allowed to stay fresh: the ``head`` paths (the classifier, whose shape follows the number
    of classes: copied when the checkpoint's has the same shape), the task's own parameters
    outside ``prefix`` (a linear probe's head), and paths matching a ``may_stay_fresh`` regex
    (``config.init_fresh``: MAE fine-tuning's new ``fc_norm``). Any other parameter missing
    from the checkpoint or of another shape fails, naming them and the fix. Checkpoint
    parameters the model lacks (an MAE decoder) are dropped.

    Returns ``(params, report)``; report: copied, total, fresh (paths left at their initial
    values), dropped (checkpoint parameters not used), step, model.
    """
    variables, step, meta = restore_variables(path)
    restored = variables["params"]
    src = traverse_util.flatten_dict(restored, sep="/")
    dst = traverse_util.flatten_dict(target_params, sep="/")
    pre = "/".join(prefix) + "/" if prefix else ""
    fresh_re = [re.compile(r) for r in may_stay_fresh]
    head = set(head)
    new, fresh, missing, bad, used = dict(dst), [], [], [], set()
    for k, v in dst.items():
        if pre and not k.startswith(pre):
            fresh.append(k)  # the task's own parameters (a probe's head)
            continue
        sk = k[len(pre) :]
        have = sk in src and tuple(src[sk].shape) == tuple(v.shape)
        if have:
            new[k] = np.asarray(src[sk], dtype=v.dtype)
            used.add(sk)
        elif k in head or any(r.search(k) for r in fresh_re):
            fresh.append(k)
        elif sk in src:
            bad.append(f"{k}: checkpoint {tuple(src[sk].shape)} vs model {tuple(v.shape)}")
        else:
            missing.append(k)
    src_model = meta.get("model", "?")
    if bad or missing:
        detail = "; ".join(bad[:5]) if bad else f"it lacks {_summary(missing)}"
        example = (missing[0] if missing else bad[0]).split("/")[0]
        raise ValueError(
            f"config.init_from={path!r} holds a {src_model!r} checkpoint that does not fit "
            f"model {target_model!r} ({detail}). Fine-tune the model it was trained with "
            f"(--config.model=<the backbone of {src_model}>), point init_from at a "
            f"checkpoint of {target_model}, or, to train these parameters from their initial "
            f"values, list them in config.init_fresh (regexes on parameter paths, e.g. "
            f"--config.init_fresh='(\"^{example}/\",)')"
        )
    dropped = len(src) - len(used)
    log.info(
        "init_from %s step %d (%s): %d/%d params copied, left fresh: %s; %d checkpoint params "
        "unused",
        path,
        step,
        src_model,
        len(dst) - len(fresh),
        len(dst),
        _summary(fresh) or "none",
        dropped,
    )
    return traverse_util.unflatten_dict(new, sep="/"), {
        "copied": len(dst) - len(fresh),
        "total": len(dst),
        "fresh": sorted(fresh),
        "dropped": dropped,
        "step": step,
        "model": src_model,
    }
