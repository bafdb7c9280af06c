"""A run's pretrained tag: the data settings it implies and the weights it starts from.

``resolve_config(config)``: a copy of the config with ``model`` (from the tag when empty), the
tag's model options (``PretrainedCfg.model_kwargs``, e.g. MAE's ``global_pool='avg'``) under
``model_kwargs`` and the unset data keys (image_size, mean, std, interpolation, crop_pct,
crop_mode) filled by ``jaxbones.data.settings.resolve_data_settings``; resolving twice
changes nothing. The loop runs on the copy, so checkpoints record the values the run used.

``init_from_pretrained(state, config, task, num_classes, channels)``: the train state with
its params and batch_stats replaced by ``jaxbones.load_pretrained(config.pretrained,
file=config.pretrained_file, num_classes=..., in_chans=..., **model options)`` (a new head
when ``num_classes`` differs from the checkpoint's; the stem adapted to ``channels``). For a
task that puts the backbone under a prefix (``linprobe``) the checkpoint goes under that
prefix (loaded without its head) and the task's own layers keep their initial values, as do
the leaves ``config.pretrained_reinit`` matches (regexes on 'a/b/c' paths: a new head).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import re

import jax
import jax.numpy as jnp
import ml_collections
from flax import traverse_util

from jaxbones.data.settings import KEYS, format_settings, resolve_data_settings
from jaxbones.registry import get_pretrained_cfg

log = logging.getLogger("jaxbones.train")


__all__ = ["data_settings", "format_settings", "init_from_pretrained", "resolve_config"]


def data_settings(config) -> dict:
    """``resolve_data_settings`` for a run config (its model, pretrained tag, explicit keys).

    Segmentation keeps the whole image at evaluation (crop_pct 1.0) unless the run sets it.
    """
    explicit = {k: config[k] for k in KEYS if k in config}
    if config.task == "segmentation" and explicit.get("crop_pct", -1) < 0:
        explicit["crop_pct"] = 1.0
    return resolve_data_settings(config.model, config.get("pretrained", ""), **explicit)


def resolve_config(config) -> ml_collections.ConfigDict:
    """A copy of ``config`` with the model and every data setting filled (module docstring)."""
    settings = data_settings(config)
    out = copy.deepcopy(config)
    with out.unlocked(), out.ignore_type():
        out.model = settings["model"]
        for key in KEYS:
            out[key] = settings[key]
        if config.get("pretrained", ""):
            # the architecture options the checkpoint was trained with; a conflicting run
            # value fails in load_pretrained naming the option
            for key, value in get_pretrained_cfg(config.pretrained).model_kwargs.items():
                if key not in out.model_kwargs:
                    out.model_kwargs[key] = value
    return out


def _model_options(config, task) -> dict:
    """The ``create_model`` options the task builds its model with, minus what
    ``load_pretrained`` sets itself (num_classes, in_chans)."""
    from jaxbones.train.tasks import model_kwargs

    kw = model_kwargs(config, img_size=config.image_size)
    if task.params_prefix:  # the backbone of a wrapper (linprobe): pooled features
        kw["num_classes"] = 0
    return kw


def init_from_pretrained(state, config, task, num_classes: int, channels: int):
    """``state`` with params / batch_stats (and EMA params) from ``config.pretrained``.

    Returns ``(state, report)``; the report is ``jaxbones.weights.LoadReport`` as a dict.
    """
    from jaxbones.weights import load_pretrained

    kw = _model_options(config, task)
    head_classes = kw.pop("num_classes", num_classes)
    _, variables, report = load_pretrained(
        config.pretrained,
        file=config.pretrained_file or None,
        num_classes=head_classes,
        in_chans=channels,
        seed=config.seed,
        return_report=True,
        **kw,
    )
    keep = [re.compile(r) for r in config.get("pretrained_reinit", ())]
    params = _placed(state.params, variables["params"], task.params_prefix, "params", keep)
    new = {"params": params}
    if state.batch_stats or variables.get("batch_stats"):
        loaded = variables.get("batch_stats", {})
        new["batch_stats"] = _placed(
            state.batch_stats, loaded, task.params_prefix, "batch_stats", keep
        )
    new = {
        k: jax.tree_util.tree_map(
            lambda v, ref: jax.device_put(jnp.asarray(v, ref.dtype), ref.sharding),
            new[k],
            getattr(state, k),
        )
        for k in new
    }
    state = state.replace(**new)
    if state.ema_params:
        state = state.replace(ema_params=jax.tree_util.tree_map(jnp.copy, state.params))
    kept = [k for k in traverse_util.flatten_dict(state.params, sep="/") if _matches(k, keep)]
    log.info(
        "pretrained %s from %s%s%s%s",
        report.tag,
        report.file,
        f"; new head: {', '.join(report.reinitialized)}" if report.reinitialized else "",
        f"; stem adapted: {', '.join(report.adapted)}" if report.adapted else "",
        f"; fresh (pretrained_reinit): {', '.join(kept)}" if kept else "",
    )
    return state, dataclasses.asdict(report)


def _matches(path: str, keep) -> bool:
    return any(r.search(path) for r in keep)


def _placed(target: dict, loaded: dict, prefix: tuple[str, ...], what: str, keep=()) -> dict:
    """``loaded`` written into a copy of ``target`` at ``prefix``, except the paths ``keep``
    (compiled regexes) matches; every loaded leaf must exist in the target with the same
    shape and, without a prefix, the trees must match."""
    dst = traverse_util.flatten_dict(target, sep="/")
    src = traverse_util.flatten_dict(loaded, sep="/")
    pre = "/".join(prefix) + "/" if prefix else ""
    out = dict(dst)
    bad = []
    for key, value in src.items():
        k = pre + key
        if k not in dst or tuple(dst[k].shape) != tuple(value.shape):
            have = tuple(dst[k].shape) if k in dst else "missing"
            bad.append(f"{k}: checkpoint {tuple(value.shape)}, model {have}")
        elif not _matches(k, keep):
            out[k] = value
    if not prefix:
        bad += [f"{k}: not in the checkpoint" for k in dst if k not in src]
    if bad:
        raise ValueError(
            f"config.pretrained: the checkpoint's {what} do not fit the model the task builds "
            f"({'; '.join(bad[:5])}). Set config.model_kwargs only to options the "
            "checkpoint was trained with (or none)."
        )
    return traverse_util.unflatten_dict(out, sep="/")
