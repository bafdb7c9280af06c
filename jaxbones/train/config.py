"""Training configuration: one locked ``ml_collections.ConfigDict`` per run.

``default_config()`` lists every knob the training system reads (recipes in ``experiments/``
start from it and change what they need); ``apply_overrides(config, argv)`` applies
``--config.key=value`` command-line overrides, failing on unknown keys with a suggestion.

Attributes of the config (the important ones):
  model, model_kwargs: registry name ('' : the pretrained tag's) and ``create_model``
    overrides.
  pretrained, pretrained_file: a pretrained tag (``jaxbones.list_pretrained()``) whose weights
    initialise a new run (not a resumed one) and whose evaluation settings fill the unset
    data keys; a local checkpoint file in the tag's format instead of its download.
  pretrained_reinit: regexes of parameter paths that keep their fresh initialisation instead
    of the checkpoint's values (a new head for the checkpoint's own classes).
  task: a name registered in ``jaxbones.train.tasks.TASKS``: 'classification',
    'classification_frozen', 'linprobe', 'mae', 'segmentation' or 'clip' built in.
  dataset, data_dir, image_size, num_classes, augment, image_dtype, mixup/cutmix: the input.
  image_size, mean, std, interpolation, crop_pct, crop_mode: unset (-1, (), '') take the
    pretrained tag's values, else the registry entry's (``jaxbones.data.settings``).
  global_batch_size: the only batch knob; per-host and per-device sizes are derived.
  num_steps or num_epochs, optimizer.*, ema_decay, label_smoothing: the optimisation.
  mesh (data, fsdp, tensor within a slice; dcn_data, dcn_fsdp across slices; -1: what the
    devices leave), fsdp_min_size, dtype (compute dtype), accum_steps: the step
    (``jaxbones.train.sharding``).
  evals: named evaluators run during / after training (``jaxbones.train.evaluators``).
  workdir, log_every, ckpt_every, preemption_check_every, keep_ckpts, best_metric,
    init_from, init_fresh: the run.
"""

from __future__ import annotations

import ast
import difflib

import ml_collections

from jaxbones.train.segmentation import IGNORE_INDEX


def default_config() -> ml_collections.ConfigDict:
    """Every key ``jaxbones.train.run`` reads, with defaults.

    Locked, so a misspelt key in a recipe (``c.num_step = 3``) raises ml_collections' error
    with its "Did you mean" suggestion; ``model_kwargs``, ``augment`` and ``evals``
    (``OPEN_GROUPS``) stay open, their keys are validated by ``create_model``, the data
    pipeline and the evaluators. A recipe
    that needs a key of its own adds it inside ``with c.unlocked():``."""
    c = ml_collections.ConfigDict()
    c.model = "resnet18"
    c.model_kwargs = ml_collections.ConfigDict()
    c.pretrained = ""  # a tag ('resnet50.tv_in1k') or a bare model name (its default tag)
    c.pretrained_file = ""  # a local checkpoint in the tag's format instead of its download
    c.pretrained_reinit = ()  # regexes of 'a/b/c' parameter paths kept at their fresh init
    c.task = "classification"
    # Data: a tfds/offline dataset name for jaxbones.data, or 'synthetic' (in-memory random
    # images with a learnable labelling; for tests and input-free benchmarking).
    c.dataset = "digits"
    c.data_dir = ""
    c.train_split = "train"
    c.eval_split = "test"
    c.image_size = 32  # -1: the pretrained tag's / registry entry's input size
    c.num_classes = -1  # -1: from jaxbones.data.dataset_info
    # Normalisation and eval resize; unset: from the pretrained tag, else the registry entry.
    c.mean = ()
    c.std = ()
    c.interpolation = ""  # eval resize: bilinear | bicubic | nearest
    c.crop_pct = -1.0
    c.crop_mode = ""  # center | squash | border (timm's eval crop modes)
    c.augment = ml_collections.ConfigDict()
    # 'uint8': the train input yields pixels and the train step normalises them on the device
    # (jaxbones.data.IMAGE_DTYPES); evaluation input stays float32
    c.image_dtype = "float32"
    c.worker_count = 0
    c.synthetic_size = 512  # examples in the 'synthetic' dataset
    # Batch / schedule length.
    c.global_batch_size = 64
    c.eval_batch_size = -1  # -1: global_batch_size
    c.num_steps = -1  # -1: num_epochs * steps_per_epoch
    c.num_epochs = 1.0
    c.accum_steps = 1  # micro-batches per step (lax.scan inside the step)
    # Optimiser.
    c.optimizer = ml_collections.ConfigDict()
    o = c.optimizer
    o.name = "adamw"  # sgd (Nesterov) | adamw | lars | lamb
    o.lr = 1e-3  # peak learning rate for a batch of `base_batch_size`
    o.base_batch_size = 0  # >0: lr scales linearly with global_batch_size / base_batch_size
    o.schedule = "cosine"  # cosine | linear | step | constant
    o.warmup_steps = -1  # -1: warmup_epochs * steps_per_epoch
    o.warmup_epochs = 0.0
    o.end_lr_factor = 0.0  # final lr = end_lr_factor * peak (cosine / linear)
    o.step_boundaries = (0.3, 0.6, 0.9)  # fractions of training (step schedule)
    o.step_factor = 0.1
    o.momentum = 0.9
    o.nesterov = True
    o.b1 = 0.9
    o.b2 = 0.999
    o.eps = 1e-8
    o.weight_decay = 0.05
    o.clip_norm = 0.0  # >0: global-norm clipping
    o.layer_decay = 1.0  # <1: layer-wise lr decay (families declaring layer ids: ViT, MAE, Swin)
    o.frozen = ()  # regexes on 'a/b/c' parameter paths that stay fixed
    o.trainable = ()  # if set: only these regexes train (new heads, linear probes)
    c.ema_decay = 0.0  # >0: exponential moving average of the parameters
    c.eval_ema = False  # evaluate the EMA parameters
    c.label_smoothing = 0.0
    c.mixup_alpha = 0.0
    c.cutmix_alpha = 0.0
    c.mask_ratio = 0.75  # MAE
    c.dice_weight = 0.0  # segmentation: loss = cross-entropy + dice_weight * soft Dice
    c.ignore_index = IGNORE_INDEX  # segmentation: mask value that counts nowhere (void, borders)
    # detection (jaxbones.train.detection): head 'fcos' | 'token' | 'auto' (token for a plain
    # ViT, whose levels share one stride; FCOS over an FPN otherwise)
    c.detection = ml_collections.ConfigDict()
    d = c.detection
    d.head = "auto"
    # ground-truth rows per image: training drops extra boxes, evaluation refuses to (exact
    # mAP); coco/2017 has at most 93
    d.max_boxes = 100
    d.num_levels = 3  # FCOS: the backbone's coarsest maps used by the FPN
    d.fpn_dim = 128
    d.num_convs = 2
    d.center_radius = 1.5  # FCOS centre sampling, in strides
    d.focal_alpha = 0.25
    d.focal_gamma = 2.0
    d.l1_weight = 1.0
    d.giou_weight = 2.0
    d.score_threshold = 0.05
    d.nms_iou = 0.6
    d.pre_nms_top_k = 1000
    d.max_detections = 100
    # Step.
    # The device mesh (jaxbones.train.sharding): batches split over data x fsdp, parameters
    # over fsdp (largest divisible dimension) and tensor (where the model family's partition
    # rules name one); the product of all sizes is the device count, one ICI size may be -1.
    # FSDP over every device: --config.mesh.data=1 --config.mesh.fsdp=-1
    c.mesh = ml_collections.ConfigDict(
        {"data": -1, "fsdp": 1, "tensor": 1, "dcn_data": 1, "dcn_fsdp": 1}
    )
    c.fsdp_min_size = 2**14  # arrays smaller than this stay replicated over fsdp
    c.dtype = "float32"  # compute dtype: float32 | bfloat16 | float16
    c.max_bad_steps = 10  # non-finite steps skipped before the run stops
    c.seed = 0
    # Run.
    c.workdir = ""  # '' : no files written
    c.log_every = 50
    # named evaluators (jaxbones.train.evaluators); 'eval' is the main one: its metrics are
    # the result's eval_* and rank checkpoints (best_metric). every -1: at the end only
    c.evals = ml_collections.ConfigDict()
    c.evals.eval = ml_collections.ConfigDict({"type": "metrics", "every": -1, "split": ""})
    c.ckpt_every = -1  # -1: at the end only (and on SIGTERM)
    # multi-process runs agree on a SIGTERM with a blocking all-gather every N steps
    c.preemption_check_every = 10
    c.keep_ckpts = 3
    c.best_metric = "accuracy"  # eval metric whose best checkpoint is also kept
    c.async_ckpt = True
    c.init_from = ""  # checkpoint dir/step for params-only restore (fine-tuning)
    # regexes of parameter paths init_from may leave at their initial values (the classifier
    # head always may); any other parameter the checkpoint lacks is an error
    c.init_fresh = ()
    c.compile_cache = "~/.cache/jaxbones/xla"  # '' disables the persistent compilation cache
    c.plot = True
    c.progress = True
    c.debug_signal_at_step = -1  # testing preemption: signal self at this step
    c.debug_signal = "SIGKILL"
    c.lock()
    for group in OPEN_GROUPS:
        c[group].unlock()
    return c


OPEN_GROUPS = ("model_kwargs", "augment", "evals")
# keys of earlier configs -> what replaced them
RENAMED = {
    "sharding": "the mesh sizes replace it; FSDP over every device is --config.mesh.data=1 "
    "--config.mesh.fsdp=-1 (data parallel, the default: --config.mesh.data=-1)",
}


def _suggest(key: str, options) -> str:
    close = difflib.get_close_matches(key, list(options), n=3, cutoff=0.5)
    return f"did you mean {', '.join(close)}?" if close else f"valid keys: {', '.join(options)}"


def _parse(value: str, current):
    if isinstance(current, bool):
        if value.lower() in ("1", "true", "yes"):
            return True
        if value.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"expected a boolean (true/false), got {value!r}")
    if isinstance(current, str):
        return value
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value
    if isinstance(current, float) and isinstance(parsed, int):
        parsed = float(parsed)
    if isinstance(current, tuple) and isinstance(parsed, list | tuple):
        parsed = tuple(parsed)
    if isinstance(current, tuple) and not isinstance(parsed, tuple):
        parsed = (parsed,)
    return parsed


def set_key(config: ml_collections.ConfigDict, dotted: str, value: str) -> None:
    """Sets ``config.<dotted>`` from a string; unknown keys fail naming close matches."""
    node = config
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        keys = list(node.keys())
        if i == len(parts) - 1 and i > 0 and parts[i - 1] in OPEN_GROUPS and part not in keys:
            # model_kwargs / augment take any key: create_model / the data pipeline validate
            # them (an unknown model option fails there naming the valid ones)
            with node.unlocked():
                node[part] = _parse(value, None)
            return
        if part not in keys:
            if i == 0 and part in RENAMED:
                raise ValueError(f"config.{part} is gone: {RENAMED[part]}")
            where = ".".join(["config", *parts[:i]])
            raise ValueError(
                f"unknown config key {'.'.join(parts[: i + 1])!r} in {where}: "
                f"{_suggest(part, keys)} (see the recipe's get_config())"
            )
        if i < len(parts) - 1:
            node = node[part]
    current = node[parts[-1]]
    if isinstance(current, ml_collections.ConfigDict):
        raise TypeError(f"config.{dotted} is a group; set one of its keys {list(current.keys())}")
    parsed = _parse(value, current)
    try:
        with node.ignore_type():
            node[parts[-1]] = parsed
    except Exception as e:  # pragma: no cover - ml_collections type errors
        raise ValueError(f"bad value {value!r} for config.{dotted}: {e}") from e


def apply_overrides(config: ml_collections.ConfigDict, argv) -> ml_collections.ConfigDict:
    """Applies ``--config.key=value`` (or ``--config.key value``) arguments; returns config."""
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--config."):
            raise ValueError(
                f"unexpected argument {arg!r}: overrides look like --config.key=value "
                f"(e.g. --config.global_batch_size=256)"
            )
        body = arg[len("--config.") :]
        if "=" in body:
            key, value = body.split("=", 1)
        else:
            if i + 1 >= len(args):
                raise ValueError(f"{arg} needs a value: --config.{body}=VALUE")
            key, value = body, args[i + 1]
            i += 1
        set_key(config, key, value)
        i += 1
    return config
