"""Detection: box ops and NMS against torchvision, assignment, losses, mAP with known
answers (crowd boxes included), the FCOS / token heads on backbones, the digits_det data and
a short recipe run, evaluated again on 2 processes."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

from jaxbones.layers import boxes as box_ops
from jaxbones.train import detection as det
from tests.helpers import fast_jit


def _random_boxes(rng, n, size=64.0):
    xy = rng.uniform(0, size * 0.7, (n, 2))
    wh = rng.uniform(2, size * 0.4, (n, 2))
    return np.concatenate([xy, xy + wh], -1).astype(np.float32)


def test_giou_loss_hand_checked():
    # pred (0,0,2,2), target (1,1,3,3): intersection 1, union 7, enclosing 9
    # GIoU = 1/7 - (9 - 7)/9 = 1/7 - 2/9; loss = 1 - GIoU
    pred = jnp.array([[0.0, 0.0, 2.0, 2.0]])
    tgt = jnp.array([[1.0, 1.0, 3.0, 3.0]])
    want = 1 - (1 / 7 - 2 / 9)
    np.testing.assert_allclose(box_ops.giou_loss(pred, tgt), [want], rtol=1e-6)
    np.testing.assert_allclose(box_ops.generalized_box_iou(pred, tgt), [[1 - want]], rtol=1e-6)
    # identical boxes: loss 0; disjoint far boxes: loss approaches 2
    assert float(box_ops.giou_loss(pred, pred)[0]) == pytest.approx(0.0, abs=1e-6)


def test_giou_loss_and_iou_match_torchvision():
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 50), _random_boxes(rng, 50)
    want = torchvision.ops.generalized_box_iou_loss(
        torch.from_numpy(a), torch.from_numpy(b), reduction="none"
    )
    np.testing.assert_allclose(box_ops.giou_loss(a, b), want.numpy(), rtol=1e-5, atol=1e-6)
    want_iou = torchvision.ops.box_iou(torch.from_numpy(a), torch.from_numpy(b))
    np.testing.assert_allclose(box_ops.box_iou(a, b), want_iou.numpy(), rtol=1e-5, atol=1e-6)
    want_g = torchvision.ops.generalized_box_iou(torch.from_numpy(a), torch.from_numpy(b))
    np.testing.assert_allclose(
        box_ops.generalized_box_iou(a, b), want_g.numpy(), rtol=1e-5, atol=1e-6
    )
    c = box_ops.xyxy_to_cxcywh(a)
    np.testing.assert_allclose(box_ops.cxcywh_to_xyxy(c), a, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
def test_batched_nms_matches_torchvision(iou_threshold):
    rng = np.random.default_rng(1)
    n = 200
    boxes = _random_boxes(rng, n)
    scores = rng.permutation(n).astype(np.float32) / n  # distinct: no ties
    classes = rng.integers(0, 4, n)
    want = torchvision.ops.batched_nms(
        torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), iou_threshold
    ).numpy()
    fn = jax.jit(box_ops.batched_nms, static_argnums=(3, 4))
    idx, valid = fn(boxes, scores, classes, iou_threshold, n)
    np.testing.assert_array_equal(np.asarray(idx)[np.asarray(valid)], want)
    idx, valid = fn(boxes, scores, classes, iou_threshold, 10)  # fixed, shorter output
    np.testing.assert_array_equal(np.asarray(idx)[np.asarray(valid)], want[:10])
    # -inf scores never survive
    masked = np.where(np.arange(n) % 2 == 0, scores, -np.inf).astype(np.float32)
    idx, valid = fn(boxes, masked, classes, iou_threshold, n)
    got = np.asarray(idx)[np.asarray(valid)]
    assert len(got) and np.all(got % 2 == 0)


def test_assign_centre_cell_and_fcos_rules():
    # a 4x4 grid of stride-8 cells over a 32x32 image
    ys, xs = np.mgrid[0:4, 0:4]
    points = np.stack([xs.ravel() * 8 + 4, ys.ravel() * 8 + 4], -1).astype(np.float32)
    strides = np.full(16, 8.0, np.float32)
    boxes = np.array([[2, 2, 14, 14], [17, 9, 31, 23], [0, 0, 0, 0]], np.float32)
    valid = np.array([True, True, False])
    idx, pos = det.assign(points, strides, boxes, valid, 0.5)
    # centre (8, 8) lies on the corner of cells 0, 1, 4, 5: half-open cells give it to cell 5
    # (x in [8, 16), y in [8, 16)); centre (24, 16) -> cell (row 2, col 3) = 11
    assert list(np.flatnonzero(pos)) == [5, 11]
    assert int(idx[5]) == 0 and int(idx[11]) == 1
    # FCOS centre sampling (radius 1.5 strides, inside the box), single level: no size range
    ranges = det.fcos_size_ranges(strides)
    assert np.isinf(ranges[0, 1]) and ranges[0, 0] == 0
    idx, pos = det.assign(points, strides, boxes, valid, 1.5, ranges)
    inside0 = (points[:, 0] > 2) & (points[:, 0] < 14) & (points[:, 1] > 2) & (points[:, 1] < 14)
    assert set(np.flatnonzero(inside0)) <= set(np.flatnonzero(pos))
    assert np.all(np.asarray(idx)[inside0] == 0)
    # the padded box (valid False) is never assigned
    assert not np.any((np.asarray(idx) == 2) & np.asarray(pos))


def test_fcos_size_ranges_per_level():
    strides = np.array([8, 8, 16, 32], np.float32)
    r = np.asarray(det.fcos_size_ranges(strides))
    np.testing.assert_array_equal(r[:, 0], [0, 0, 64, 128])
    np.testing.assert_array_equal(r[:3, 1], [64, 64, 128])
    assert np.isinf(r[3, 1])


def _gt(boxes, labels):
    n, m = len(boxes), max(len(b) for b in boxes)
    out = {
        "boxes": np.zeros((n, m, 4), np.float32),
        "labels": np.zeros((n, m), np.int32),
        "box_valid": np.zeros((n, m), bool),
        "image_valid": np.ones(n, bool),
    }
    for i, (b, lb) in enumerate(zip(boxes, labels, strict=True)):
        out["boxes"][i, : len(b)], out["labels"][i, : len(b)] = b, lb
        out["box_valid"][i, : len(b)] = True
    return out


def _det(boxes, scores, classes):
    n, k = len(boxes), max(len(b) for b in boxes)
    out = {
        "boxes": np.zeros((n, k, 4), np.float32),
        "scores": np.zeros((n, k), np.float32),
        "classes": np.zeros((n, k), np.int32),
        "valid": np.zeros((n, k), bool),
    }
    for i, (b, s, c) in enumerate(zip(boxes, scores, classes, strict=True)):
        out["boxes"][i, : len(b)], out["scores"][i, : len(b)] = b, s
        out["classes"][i, : len(b)], out["valid"][i, : len(b)] = c, True
    return out


def test_coco_map_known_answers():
    gt = _gt([[[0, 0, 10, 10], [20, 20, 30, 30]]], [[0, 0]])
    # perfect detections: mAP 1
    perfect = _det([[[0, 0, 10, 10], [20, 20, 30, 30]]], [[0.9, 0.8]], [[0, 0]])
    assert det.coco_map(perfect, gt) == {"map": pytest.approx(1.0), "map50": pytest.approx(1.0)}
    # a false positive ranked above one exact hit, the other box missed: precision 1/2 up to
    # recall 1/2, so COCO's 101-point interpolation gives 0.5 * 51 / 101 at every IoU
    fp_first = _det([[[40, 40, 50, 50], [0, 0, 10, 10]]], [[0.95, 0.9]], [[0, 0]])
    want = 0.5 * 51 / 101
    got = det.coco_map(fp_first, gt)
    assert got["map"] == pytest.approx(want, abs=1e-6)
    assert got["map50"] == pytest.approx(want, abs=1e-6)
    # one box found at IoU 0.62 (intersection 62, union 100): a match at the IoU thresholds
    # 0.5, 0.55, 0.6 only -> mAP 3/10, mAP@0.5 1
    gt1 = _gt([[[0, 0, 10, 10]]], [[3]])
    shifted = _det([[[0, 0, 10, 6.2]]], [[0.5]], [[3]])
    got = det.coco_map(shifted, gt1)
    assert got["map"] == pytest.approx(0.3, abs=1e-6)
    assert got["map50"] == pytest.approx(1.0)
    # evaluation padding rows (image_valid False) count nowhere, whatever they hold
    padded_gt = {k: np.concatenate([v, v]) for k, v in gt.items()}
    padded_gt["image_valid"] = np.array([True, False])
    padded_det = {k: np.concatenate([v, v]) for k, v in fp_first.items()}
    assert det.coco_map(padded_det, padded_gt)["map"] == pytest.approx(want, abs=1e-6)


def test_coco_map_ignores_detections_on_crowd_boxes():
    # one object and a crowd region (pycocotools' iscrowd=1); a small detection inside the
    # region outranks the exact hit on the object
    gt = _gt([[[0, 0, 10, 10], [20, 20, 60, 60]]], [[0, 0]])
    found = _det([[[30, 30, 40, 40], [0, 0, 10, 10]]], [[0.9, 0.8]], [[0, 0]])
    # crowd: the detection inside it matches it (intersection over the detection's area is
    # 1) and counts nowhere, the region is never a miss -> a perfect score
    crowd = {**gt, "crowd": np.array([[False, True]])}
    assert det.coco_map(found, crowd) == {"map": pytest.approx(1.0), "map50": pytest.approx(1.0)}
    # the same region as an ordinary box: the detection is a false positive ranked first and
    # the region a miss (precision 1/2 up to recall 1/2, as in the known-answer case)
    got = det.coco_map(found, gt)
    assert got["map"] == pytest.approx(0.5 * 51 / 101, abs=1e-6)
    # crowd boxes only: no ground truth to score
    only = {**gt, "crowd": np.ones((1, 2), bool)}
    assert np.isnan(det.coco_map(found, only)["map"])


def test_crowd_boxes_are_no_training_target():
    # one stride-8 location per cell of a 32x32 image, the token rule (no centre-ness)
    ys, xs = np.mgrid[0:4, 0:4]
    points = np.stack([xs.ravel() * 8 + 4, ys.ravel() * 8 + 4], -1).astype(np.float32)
    out = {
        "cls_logits": np.zeros((1, 16, 3), np.float32),
        "boxes": np.tile(np.array([0, 0, 8, 8], np.float32), (1, 16, 1)),
        "points": points,
        "strides": np.full(16, 8.0, np.float32),
    }
    boxes = np.array([[[0.05, 0.05, 0.45, 0.45], [0.55, 0.55, 0.95, 0.95]]], np.float32)
    labels, valid = np.array([[1, 2]]), np.array([[True, True]])
    crowd, none = np.array([[False, True]]), np.zeros((1, 2), bool)
    loss_fn = fast_jit(lambda v, c: det.detection_loss(out, boxes, labels, v, (32, 32), c))
    loss, m = loss_fn(valid, none)
    loss_c, m_c = loss_fn(valid, crowd)
    assert float(m["positives"]) == 2.0 and float(m_c["positives"]) == 1.0
    # the crowd box weighs exactly as an absent one
    loss_a, _ = loss_fn(valid & ~crowd, none)
    assert float(loss_c) == float(loss_a) != float(loss)


def test_coco_layout_targets_carry_is_crowd():
    from jaxbones.data.pipeline import _detection_targets

    record = {
        "objects": {
            "bbox": np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0], [0.3, 0.3, 0.4, 0.4]]),
            "label": np.array([4, 7, 1]),
            "is_crowd": np.array([False, True, False]),
        }
    }
    t = _detection_targets(record, 4, flip=False)
    np.testing.assert_array_equal(t["box_crowd"], [False, True, False, False])
    np.testing.assert_array_equal(t["box_valid"], [True, True, True, False])
    np.testing.assert_allclose(t["boxes"][0], [0.2, 0.1, 0.6, 0.5])  # yxyx -> xyxy
    # training drops boxes beyond max_boxes; evaluation refuses to, as the mAP would change
    assert _detection_targets(record, 2, flip=False)["box_crowd"].tolist() == [False, True]
    with pytest.raises(ValueError, match="3 boxes, more than max_boxes=2: raise config.detection"):
        _detection_targets(record, 2, flip=False, exact=True)
    # no is_crowd feature (digits_det): nothing is crowd
    del record["objects"]["is_crowd"]
    assert not _detection_targets(record, 4, flip=False)["box_crowd"].any()


def test_decode_keeps_best_box_per_object():
    # two locations predicting nearly the same box of class 1, one of class 0 elsewhere
    logits = np.full((1, 3, 2), -10.0, np.float32)
    logits[0, 0, 1], logits[0, 1, 1], logits[0, 2, 0] = 3.0, 2.0, 1.0
    boxes = np.array([[[0, 0, 10, 10], [0, 0, 10, 11], [20, 20, 30, 30]]], np.float32)
    out = {"cls_logits": logits, "boxes": boxes}
    decode = fast_jit(det.decode, static_argnames=("iou_threshold", "max_detections"))
    d = decode(out, score_threshold=0.05, iou_threshold=0.5, max_detections=4)
    valid = np.asarray(d["valid"][0])
    assert valid.sum() == 2
    np.testing.assert_array_equal(np.asarray(d["classes"][0])[valid], [1, 0])
    np.testing.assert_allclose(np.asarray(d["boxes"][0])[valid], boxes[0, [0, 2]])


# ----------------------------------------------------------------------------- heads


@pytest.mark.parametrize(
    "name, head, points",
    [
        # 64 px input: strides 8 / 16 / 32 -> 8x8 + 4x4 + 2x2 locations
        ("resnet18", "fcos", 84),
        ("cspdarknet53", "fcos", 84),
        ("ese_vovnet19b_dw", "fcos", 84),
        # ViT patch 16 on 64 px: 4x4 tokens, the last block's
        ("vit_tiny_patch16_224", "token", 16),
    ],
)
def test_heads_on_registered_backbones(name, head, points):
    from jaxbones.models.detection import FCOS, TokenDetector
    from jaxbones.train.config import default_config
    from jaxbones.train.tasks import get_task

    config = default_config()
    config.model, config.image_size = name, 64
    task = get_task("detection")
    model = task.build_model(config, num_classes=5)
    assert isinstance(model, TokenDetector if head == "token" else FCOS)  # 'auto' picks it
    x = jnp.zeros((2, 64, 64, 3))
    variables = jax.eval_shape(lambda: task.init(model, config, jax.random.PRNGKey(0)))
    out = jax.eval_shape(lambda v: model.apply(v, x), variables)
    assert out["cls_logits"].shape == (2, points, 5)
    assert out["boxes"].shape == (2, points, 4)
    assert out["points"].shape == (points, 2) and out["strides"].shape == (points,)
    assert ("centerness" in out) == (head == "fcos")
    assert "backbone" in variables["params"]  # where init_from puts a checkpoint's weights


def _tiny_vit_task():
    from jaxbones.train.config import default_config
    from jaxbones.train.tasks import get_task

    config = default_config()
    config.model, config.image_size = "vit_tiny_patch16_224", 32
    config.model_kwargs.update(patch_size=8, depth=2, embed_dim=32, num_heads=2, out_indices=(-1,))
    task = get_task("detection")
    model = task.build_model(config, num_classes=3)
    variables = fast_jit(lambda r: task.init(model, config, r))(jax.random.PRNGKey(0))
    return config, task, model, variables


def test_token_head_loss_trains_backbone_and_head():
    config, task, model, variables = _tiny_vit_task()
    batch = {
        "image": jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3)),
        "boxes": jnp.array([[[0.1, 0.1, 0.4, 0.5], [0, 0, 0, 0]], [[0.5, 0.5, 0.9, 0.8]] * 2]),
        "labels": jnp.array([[2, 0], [1, 1]]),
        "box_valid": jnp.array([[True, False], [True, False]]),
    }

    def loss_fn(params):
        loss, metrics, _ = task.loss(
            model, {**variables, "params": params}, batch, jax.random.PRNGKey(2), config
        )
        return loss, metrics

    (loss, metrics), grads = fast_jit(jax.value_and_grad(loss_fn, has_aux=True))(
        variables["params"]
    )
    assert np.isfinite(float(loss)) and float(metrics["positives"]) == 2.0  # one token a box
    norms = {k: float(optax_norm(v)) for k, v in grads.items()}
    assert norms["backbone"] > 0 and norms["cls_head"] > 0 and norms["box_fc3"] > 0, norms
    # eval rows: per-image detections, ground truth in pixels, the padding flag
    rows = fast_jit(lambda v, b: task.eval_sums(model, v, b, config))(
        variables, {**batch, "valid": jnp.array([True, False])}
    )
    assert rows["det_boxes"].shape == (2, 48, 4)  # min(max_detections, 16 tokens x 3)
    np.testing.assert_allclose(rows["gt_boxes"][0, 0], [3.2, 3.2, 12.8, 16.0], rtol=1e-6)
    np.testing.assert_array_equal(rows["image_valid"], [True, False])
    acc = task.combine(task.combine(None, jax.device_get(rows)), jax.device_get(rows))
    out = task.finalize(acc)
    assert out["images"] == 2 and 0.0 <= out["map"] <= out["map50"] <= 1.0


def optax_norm(tree):
    import optax

    return optax.tree.norm(tree)


# ----------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def det_data_dir(tmp_path_factory):
    """digits_det built once for this module's tests (about 10 s)."""
    return str(tmp_path_factory.mktemp("tfds"))


def test_digits_det_dataset_and_pipeline(det_data_dir):
    from jaxbones import data

    d = det_data_dir
    info = data.dataset_info("digits_det", d)
    assert info == {
        "num_classes": 10,
        "splits": {"train": 2000, "test": 500},
        "image_shape": (64, 64, 3),
        "task": "detection",
    }
    rec = data.open_source("digits_det", "train", d)[0]
    yxyx = np.asarray(rec["objects"]["bbox"])
    assert 1 <= len(yxyx) <= 4 and np.all((yxyx >= 0) & (yxyx <= 1))
    assert np.all(yxyx[:, 2] > yxyx[:, 0]) and np.all(yxyx[:, 3] > yxyx[:, 1])
    kw = {"global_batch_size": 4, "image_size": 32, "task": "detection", "data_dir": d}
    kw.update(max_boxes=6, process_index=0, process_count=1, mean=(0.5,) * 3, std=(0.5,) * 3)
    plain = next(data.make_train_iterator("digits_det", **kw))
    flipped = next(data.make_train_iterator("digits_det", augment={"hflip": 1.0}, **kw))
    assert plain["image"].shape == (4, 32, 32, 3) and plain["boxes"].shape == (4, 6, 4)
    assert plain["labels"].dtype == np.int32 and plain["box_valid"].dtype == bool
    np.testing.assert_allclose(flipped["image"], plain["image"][:, :, ::-1], atol=1e-6)
    v = plain["box_valid"]
    np.testing.assert_allclose(flipped["boxes"][v][:, 0], 1 - plain["boxes"][v][:, 2], atol=1e-6)
    assert np.all(plain["boxes"][~v] == 0)
    with pytest.raises(ValueError, match="hflip"):
        data.make_train_iterator("digits_det", augment={"rrc": True}, **kw)
    # exact eval: 500 test images over 3 simulated hosts, padding rows without boxes
    seen = 0
    for p in range(3):
        ev = data.make_eval_iterator(
            "digits_det",
            split="test",
            **{**kw, "global_batch_size": 6, "process_index": p, "process_count": 3},
        )
        for batch in ev:
            seen += int(batch["valid"].sum())
            assert not batch["box_valid"][~batch["valid"]].any()
    assert seen == 500


# ----------------------------------------------------------------------------- recipe


# One short recipe run serves the tests below: a one-block-per-stage ResNet-18 under a
# one-conv, 64-wide FCOS head, 40 steps, evaluated on 100 test images in batches of 16 (the
# last one padded: 4 images, 12 padding rows).
RECIPE_ARGS = [
    "--config.num_steps=40",
    "--config.optimizer.warmup_steps=10",
    "--config.optimizer.lr=2e-3",
    "--config.global_batch_size=8",
    "--config.model_kwargs.layers=(1,1,1,1)",
    "--config.detection.num_convs=1",
    "--config.detection.fpn_dim=64",
    "--config.eval_split=test[:100]",
    "--config.eval_batch_size=16",
    "--config.detection.pre_nms_top_k=100",
    "--config.progress=false",
    "--config.compile_cache=",
]


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory, det_data_dir):
    from experiments import detection
    from jaxbones.launch import main

    workdir = tmp_path_factory.mktemp("recipe")
    args = [*RECIPE_ARGS, f"--config.data_dir={det_data_dir}"]
    result = main(detection.get_config, [*args, f"--config.workdir={workdir}"])
    return workdir, args, result


def test_detection_recipe_reaches_map_floor(recipe_run):
    workdir, _, result = recipe_run
    assert result.metrics["eval_images"] == 100
    assert result.metrics["eval_map50"] >= 0.04, result.metrics
    # the detection_predictions evaluator the recipe declares
    assert (workdir / "detections.png").stat().st_size > 1000


def test_detection_map_is_the_same_on_two_processes(recipe_run, tmp_path):
    """The final checkpoint evaluated again by 2 processes x 4 devices (gloo): every test
    image once, the padded last batch split over the processes, and the same mAP as the
    1-process x 8-device run."""
    import json
    import shutil

    from tests import subprocesses

    workdir, args, result = recipe_run
    copy = tmp_path / "two"
    shutil.copytree(workdir, copy)  # resumes at the last step: evaluation only
    os.remove(copy / "metrics.jsonl")
    os.remove(copy / "detections.png")
    outs = subprocesses.run_processes(
        "experiments.detection", [*args, f"--config.workdir={copy}"], n=2, devices=4
    )
    assert '"process_count": 2' in outs[0] and "resumed" in outs[0], outs[0]
    rows = [json.loads(line) for line in (copy / "metrics.jsonl").read_text().splitlines()]
    (ev,) = [r for r in rows if r["split"] == "eval"]
    assert ev["images"] == 100
    assert (ev["map"], ev["map50"]) == (result.metrics["eval_map"], result.metrics["eval_map50"])
    assert (copy / "detections.png").stat().st_size > 1000  # written by process 0
