"""Evaluators: what runs on the model during and after training, declared in the config.

``config.evals`` holds named evaluators (big_vision's ``config.evals``), each a ConfigDict:
  type: a registered evaluator (``EVALUATORS``);
  every: steps between runs during training (-1: only at the end; every evaluator also runs
    once when training ends);
  split: the dataset split it reads ('' : ``config.eval_split``, the run's eval data);
  plus the options of its type.
Each run's metrics go to ``metrics.jsonl``, TensorBoard and ``curves.png`` under the
evaluator's name; the evaluator named 'eval' is the run's main evaluation (its metrics are
the ``eval_*`` of the result and the ones ``config.best_metric`` ranks checkpoints by).

Built in:
  'metrics': the task's eval metrics (``Task.eval_sums`` / ``finalize``) over the split.
  'mae_reconstruction' (num_images=4): ``{name}.png`` in the workdir, MAE reconstructions of
    the split's first images (``jaxbones.train.visualize``).
  'segmentation_predictions' (num_images=8): ``{name}.png``, the split's first images with
    their ground-truth and predicted masks (``jaxbones.train.segmentation``).
  'detection_predictions' (num_images=8, score_threshold=0.2): ``{name}.png``, the split's
    first images with their ground-truth boxes and the detections scoring at least
    ``score_threshold`` (``jaxbones.train.detection``).
  'clip_zero_shot' (class_names, templates): zero-shot accuracy of a CLIP model on the
    split's labelled images.
``register_evaluator(type_name)`` adds one: a class built as ``cls(name, options, context)``
whose ``run(state, step)`` returns a dict of metrics.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, ClassVar

import jax
import numpy as np

from jaxbones.train import sharding

EVALUATORS: dict[str, type] = {}
_COMMON = ("type", "every", "split")


def register_evaluator(type_name: str):
    def add(cls):
        EVALUATORS[type_name] = cls
        return cls

    return add


@dataclasses.dataclass
class Context:
    """What evaluators may use: the run's config, task, model, mesh, jitted eval step and a
    function from a split name ('' : the run's eval split) to an iterable of local batches."""

    config: Any
    task: Any
    model: Any
    mesh: Any
    eval_step: Any
    data: Any  # split -> iterable of batches (or None)
    main: bool  # process 0: the one that writes files


class Evaluator:
    """Base: ``every`` and ``split`` from the options; ``run(state, step) -> metrics``."""

    defaults: ClassVar[dict] = {}  # the type's own options and their defaults

    def __init__(self, name: str, options: dict, ctx: Context):
        unknown = set(options) - set(_COMMON) - set(self.defaults)
        if unknown:
            raise ValueError(
                f"config.evals.{name} ({options['type']}) has no option(s) {sorted(unknown)}; "
                f"options: {', '.join([*_COMMON, *self.defaults])}"
            )
        self.name, self.ctx = name, ctx
        self.every = int(options.get("every", -1))
        self.split = options.get("split", "")
        self.options = {**self.defaults, **{k: options[k] for k in self.defaults if k in options}}

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def batches(self):
        data = self.ctx.data(self.split)
        if data is None:
            raise ValueError(
                f"config.evals.{self.name} has no data: set config.eval_split (or its split)"
            )
        return data

    def path(self) -> str:
        workdir = os.path.expanduser(self.ctx.config.workdir)
        return os.path.join(workdir, f"{self.name}.png") if workdir else ""

    def run(self, state, step: int) -> dict:
        raise NotImplementedError


@register_evaluator("metrics")
class Metrics(Evaluator):
    def run(self, state, step):
        data = self.ctx.data(self.split)  # a run without eval data has no metrics to report
        sums = None
        for batch in data or ():
            out = self.ctx.eval_step(state, sharding.global_batch(batch, self.ctx.mesh))
            sums = self.ctx.task.combine(sums, jax.tree_util.tree_map(_host_value, out))
        return self.ctx.task.finalize(sums) if sums is not None else {}


def _host_value(x):
    """The global value of an eval output on every process: per-example rows sharded over
    processes (detection) are all-gathered, replicated sums are read locally."""
    if isinstance(x, jax.Array) and not (x.is_fully_addressable or x.is_fully_replicated):
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def _picture_inputs(ev: Evaluator, state) -> tuple[dict, dict] | None:
    """(the first ``num_images`` examples of the split, the host variables to draw them with)
    for a picture evaluator; None where it writes nothing (not process 0, or no workdir)."""
    if not (ev.ctx.main and ev.path()):
        return None
    batch = next(iter(ev.batches()))
    real = np.asarray(batch["valid"]) if "valid" in batch else slice(None)  # no padding rows
    batch = {k: np.asarray(v)[real][: ev.options["num_images"]] for k, v in batch.items()}
    return batch, jax.device_get(state.variables(ema=ev.ctx.config.eval_ema))


@register_evaluator("mae_reconstruction")
class MAEReconstruction(Evaluator):
    defaults: ClassVar[dict] = {"num_images": 4}

    def run(self, state, step):
        if (inputs := _picture_inputs(self, state)) is None:
            return {}
        from jaxbones.train.visualize import save_mae_reconstruction

        c = self.ctx.config
        batch, variables = inputs
        path = save_mae_reconstruction(
            self.ctx.model, variables, batch["image"], self.path(), c.mean, c.std
        )
        print(f"{self.name}: {path}", flush=True)
        return {}


@register_evaluator("segmentation_predictions")
class SegmentationPredictions(Evaluator):
    defaults: ClassVar[dict] = {"num_images": 8}

    def run(self, state, step):
        if (inputs := _picture_inputs(self, state)) is None:
            return {}
        from jaxbones.train import segmentation

        c = self.ctx.config
        batch, variables = inputs
        out = self.ctx.model.apply(variables, batch["image"], train=False)
        logits = self.ctx.task.seg_logits(out)
        path = segmentation.save_predictions_png(
            batch["image"],
            batch["mask"],
            np.asarray(logits).argmax(-1),
            self.path(),
            num_classes=int(logits.shape[-1]),
            mean=c.mean,
            std=c.std,
            n=self.options["num_images"],
        )
        print(f"{self.name}: {path}", flush=True)
        return {}


@register_evaluator("detection_predictions")
class DetectionPredictions(Evaluator):
    # focal-loss scores run low: at 0.3 most correct detections of a short run are hidden
    defaults: ClassVar[dict] = {"num_images": 8, "score_threshold": 0.2}

    _detect = None  # the jitted detection of the pictured images, compiled on first use

    def run(self, state, step):
        if (inputs := _picture_inputs(self, state)) is None:
            return {}
        from jaxbones.registry import FAST_COMPILE
        from jaxbones.train import detection

        c, task, model = self.ctx.config, self.ctx.task, self.ctx.model
        batch, variables = inputs
        if self._detect is None:
            # a few images once per evaluation: on CPU XLA's backend passes would cost more
            # compile time than they save
            options = FAST_COMPILE if jax.default_backend() == "cpu" else None
            self._detect = jax.jit(
                lambda v, x: task.detect(model, v, x, c), compiler_options=options
            )
        found = jax.device_get(self._detect(variables, batch["image"]))
        path = detection.save_detections_png(
            batch["image"],
            jax.device_get(task.truth_pixels(batch)),
            found,
            self.path(),
            c.mean,
            c.std,
            score_threshold=self.options["score_threshold"],
            n=self.options["num_images"],
        )
        print(f"{self.name}: {path}", flush=True)
        return {}


@register_evaluator("clip_zero_shot")
class CLIPZeroShot(Evaluator):
    """Zero-shot classification accuracy of a CLIP model: the split's images (with ``label``)
    scored against the class names embedded in every prompt template (``jaxbones.zero_shot``).
    """

    defaults: ClassVar[dict] = {"class_names": (), "templates": ("a photo of a {}.",)}

    def run(self, state, step):
        from jaxbones.zero_shot import build_zero_shot_classifier, zero_shot_logits

        model, opts = self.ctx.model, self.options
        variables = state.variables(ema=self.ctx.config.eval_ema)
        classifier = build_zero_shot_classifier(
            model, jax.device_get(variables), list(opts["class_names"]), list(opts["templates"])
        )

        @jax.jit
        def sums(v, batch):
            pred = zero_shot_logits(model, v, batch["image"], classifier).argmax(-1)
            valid = batch.get("valid", jax.numpy.ones(pred.shape, bool)).astype(np.float32)
            return {"correct": ((pred == batch["label"]) * valid).sum(), "count": valid.sum()}

        total = {"correct": 0.0, "count": 0.0}
        for batch in self.batches():
            out = jax.device_get(sums(variables, sharding.global_batch(batch, self.ctx.mesh)))
            total = {k: total[k] + float(out[k]) for k in total}
        return {"accuracy": total["correct"] / max(total["count"], 1.0)}


def make_evaluators(ctx: Context) -> list[Evaluator]:
    """The evaluators ``ctx.config.evals`` declares (unknown types fail naming the known)."""
    out = []
    for name, options in ctx.config.evals.items():
        options = dict(options)
        kind = options.get("type", "")
        if kind not in EVALUATORS:
            raise ValueError(
                f"config.evals.{name}.type={kind!r} is not an evaluator; registered: "
                f"{', '.join(sorted(EVALUATORS))}"
            )
        out.append(EVALUATORS[kind](name, options, ctx))
    return out
