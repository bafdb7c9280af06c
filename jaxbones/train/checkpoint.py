"""Orbax checkpoints: train state + data-iterator state + config, async, last-N plus best.

``Checkpointer(workdir, keep, best_metric, best_mode, async_)``:
  save(step, state, data_states, config, metrics=None): ``data_states`` is the list of every
    process's iterator state (gathered by the caller; JSON-able) saved by orbax next to the
    state; the config is saved as JSON with the model name, for params-only restores.
  restore_latest(abstract_state): (state, data_states, step) from the newest checkpoint that
    restores; a corrupt or partial one is skipped with a warning. None if there is none.
  The state restores onto whatever shardings ``abstract_state`` carries (another device
  count works: orbax reshards).
``load_params(path, target_params, model, prefix)``: params-only restore for fine-tuning;
``restore_variables(path)``: a run's params and batch_stats (e.g. to export them).
"""

from __future__ import annotations

import base64
import logging
import os
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

log = logging.getLogger("jaxbones.train")


def encode_data_state(state):
    """Iterator state -> JSON-able (grain returns bytes)."""
    if state is None:
        return None
    if isinstance(state, bytes):
        return {"bytes": base64.b64encode(state).decode()}
    return {"json": state}


def decode_data_state(obj):
    if obj is None:
        return None
    return base64.b64decode(obj["bytes"]) if "bytes" in obj else obj["json"]


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

    def save(self, step, state, data_states, config, metrics=None, force=False):
        meta = {"model": config.model, "task": config.task, "config": config.to_json()}
        if metrics is not None and self.best_metric not in metrics:
            metrics = None
        self.mngr.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(_as_dict(state)),
                data=ocp.args.JsonSave({"states": [encode_data_state(s) for s in data_states]}),
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
        """Newest restorable (state, data_states, step); skips corrupt steps; None if none."""
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
            data_states = [decode_data_state(s) for s in out["data"]["states"]]
            return state, data_states, step
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


def load_params(path, target_params, target_model: str, prefix=()):
    """Params-only restore: copies every checkpoint parameter whose path and shape match.

    Parameters missing from the checkpoint (a new head, fc_norm) keep their initial values;
    checkpoint parameters the target lacks (an MAE decoder) are dropped. Fails, naming the
    fix, when a shared parameter has another shape or when most of the target is missing
    (a checkpoint of another model).
    """
    variables, step, meta = restore_variables(path)
    restored = variables["params"]
    src = traverse_util.flatten_dict(restored, sep="/")
    dst = traverse_util.flatten_dict(target_params, sep="/")
    pre = "/".join(prefix) + "/" if prefix else ""
    new, copied, bad = dict(dst), 0, []
    for k, v in dst.items():
        sk = k[len(pre) :] if pre and k.startswith(pre) else None if pre else k
        if sk is None or sk not in src:
            continue
        if tuple(src[sk].shape) != tuple(v.shape):
            bad.append(f"{k}: checkpoint {tuple(src[sk].shape)} vs model {tuple(v.shape)}")
            continue
        new[k] = np.asarray(src[sk], dtype=v.dtype)
        copied += 1
    n_target = sum(1 for k in dst if k.startswith(pre))
    src_model = meta.get("model", "?")
    if bad or copied < max(1, n_target // 2):
        detail = "; ".join(bad[:5]) if bad else f"only {copied} of {n_target} parameters match"
        raise ValueError(
            f"config.init_from={path!r} holds a {src_model!r} checkpoint that does not fit "
            f"model {target_model!r} ({detail}). Fine-tune the model it was trained with "
            f"(--config.model=<the backbone of {src_model}>) or point init_from at a "
            f"checkpoint of {target_model}"
        )
    log.info("init_from %s step %d (%s): %d/%d params", path, step, src_model, copied, len(dst))
    return traverse_util.unflatten_dict(new, sep="/"), {
        "copied": copied,
        "total": len(dst),
        "step": step,
        "model": src_model,
    }
