"""Segmentation losses and metrics: cross-entropy against torch (ignore index, class weights,
label smoothing), Dice against a direct numpy computation, the confusion matrix and IoU
against scikit-learn, accumulation over batches, jit, deep-supervision lists and CGM pairs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import jaccard_score

from jaxbones.train import segmentation as seg

K = 4


def _batch(seed=0, b=2, h=5, w=6, ignore_frac=0.2):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((b, h, w, K)).astype(np.float32) * 2
    mask = rng.integers(0, K, (b, h, w)).astype(np.int32)
    mask[rng.random((b, h, w)) < ignore_frac] = 255
    return logits, mask


def _torch_ce(logits, mask, **kw):
    return torch.nn.functional.cross_entropy(
        torch.from_numpy(logits.transpose(0, 3, 1, 2)),
        torch.from_numpy(mask.astype(np.int64)),
        ignore_index=255,
        **kw,
    ).item()


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"class_weights": (0.5, 1.0, 2.0, 3.0)},
        {"label_smoothing": 0.1},
        {"class_weights": (0.5, 1.0, 2.0, 3.0), "label_smoothing": 0.2},
    ],
)
def test_cross_entropy_matches_torch(kw):
    logits, mask = _batch()
    tkw = {}
    if "class_weights" in kw:
        tkw["weight"] = torch.tensor(kw["class_weights"])
    if "label_smoothing" in kw:
        tkw["label_smoothing"] = kw["label_smoothing"]
    ref = _torch_ce(logits, mask, **tkw)
    out = jax.jit(lambda a, b: seg.cross_entropy(a, b, **kw))(logits, mask)
    np.testing.assert_allclose(float(out), ref, rtol=1e-5)


def test_cross_entropy_ignores_pixels_and_averages_heads():
    logits, mask = _batch()
    other = logits.copy()
    other[mask == 255] = 100.0  # ignored pixels must not matter
    a = seg.cross_entropy(logits, mask)
    np.testing.assert_allclose(seg.cross_entropy(other, mask), a, rtol=1e-6)
    logits2, _ = _batch(seed=1)
    both = seg.cross_entropy([logits, logits2], mask)
    np.testing.assert_allclose(both, (a + seg.cross_entropy(logits2, mask)) / 2, rtol=1e-6)
    assert float(seg.cross_entropy(logits, np.full_like(mask, 255))) == 0.0


def test_dice_loss_matches_numpy_and_is_zero_when_perfect():
    logits, mask = _batch()
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    valid = mask != 255
    dices = []
    for k in range(K):
        pk, yk = p[..., k][valid], (mask[valid] == k).astype(np.float64)
        dices.append((2 * (pk * yk).sum() + 1) / (pk.sum() + yk.sum() + 1))
    np.testing.assert_allclose(seg.dice_loss(logits, mask), 1 - np.mean(dices), rtol=1e-5)
    np.testing.assert_allclose(
        seg.dice_loss(logits, mask, include_background=False), 1 - np.mean(dices[1:]), rtol=1e-5
    )
    perfect = np.where(mask == 255, 0, mask)
    onehot = np.eye(K, dtype=np.float32)[perfect] * 50
    assert float(seg.dice_loss(onehot, perfect)) < 1e-6
    # gradients flow (it is a training loss)
    g = jax.grad(lambda x: seg.dice_loss(x, mask))(jnp.asarray(logits))
    assert float(jnp.abs(g).sum()) > 0


def test_confusion_matrix_and_iou_match_sklearn():
    logits, mask = _batch(seed=2, b=3, h=8, w=8)
    preds = logits.argmax(-1)
    cm = jax.jit(lambda a, b: seg.confusion_matrix(a, b, K))(logits, mask)
    valid = mask != 255
    ref = sk_confusion(mask[valid], preds[valid], labels=list(range(K)))
    np.testing.assert_array_equal(cm, ref)
    ious = seg.iou(cm)
    np.testing.assert_allclose(
        ious,
        jaccard_score(mask[valid], preds[valid], average=None, labels=list(range(K))),
        rtol=1e-6,
    )
    np.testing.assert_allclose(seg.mean_iou(cm), np.mean(ious), rtol=1e-6)
    np.testing.assert_allclose(seg.pixel_accuracy(cm), (preds == mask)[valid].mean(), rtol=1e-6)


def test_confusion_accumulates_over_batches_and_absent_classes_are_nan():
    logits, mask = _batch(seed=3, b=4)
    whole = seg.confusion_matrix(logits, mask, K)
    parts = sum(seg.confusion_matrix(logits[i : i + 1], mask[i : i + 1], K) for i in range(4))
    np.testing.assert_array_equal(whole, parts)
    np.testing.assert_array_equal(seg.allreduce_confusion(whole), whole)  # one process
    # class 3 neither present nor predicted: IoU NaN, left out of the mean
    m = np.zeros((1, 2, 2), np.int32)
    m[0, 0, 0] = 1
    p = m.copy()
    cm = seg.confusion_matrix(p, m, K)
    assert np.isnan(np.asarray(seg.iou(cm))[3]) and float(seg.mean_iou(cm)) == 1.0


def test_cgm_pair_loss_and_metrics():
    logits, mask = _batch()
    mask[1] = 0  # second image: background only
    np.testing.assert_array_equal(seg.has_foreground(mask), [1, 0])
    cls = np.array([[0.0, 3.0], [2.0, -1.0]], np.float32)
    loss = seg.segmentation_loss((logits, cls), mask)
    cls_ce = torch.nn.functional.cross_entropy(torch.from_numpy(cls), torch.tensor([1, 0]))
    np.testing.assert_allclose(loss, seg.cross_entropy(logits, mask) + cls_ce.item(), rtol=1e-5)
    with_dice = seg.segmentation_loss(logits, mask, dice_weight=0.5)
    np.testing.assert_allclose(
        with_dice, seg.cross_entropy(logits, mask) + 0.5 * seg.dice_loss(logits, mask), rtol=1e-6
    )
    m = seg.segmentation_metrics((logits, cls), mask, K)
    np.testing.assert_array_equal(m["confusion"], seg.confusion_matrix(logits, mask, K))


# ----------------------------------------------------------------------------- the train task


class _Fixed:
    """Stands in for a model: returns given outputs (logits, a deep-supervision list or a
    (seg, cls) pair) whatever the input, as ``model.apply`` would."""

    def __init__(self, out):
        self.out = out

    def apply(self, variables, x, train=False, rngs=None, **kw):
        return self.out


def _config(**kw):
    import ml_collections

    from jaxbones.train.config import default_config

    c = default_config()
    for k, v in kw.items():
        c[k] = v
    return ml_collections.FrozenConfigDict(c)


def test_segmentation_task_loss_dice_ignore_index_and_heads():
    from jaxbones.train.tasks import get_task

    task = get_task("segmentation")
    logits, mask = _batch()
    logits2, _ = _batch(seed=1)
    batch = {"image": np.zeros((2, 5, 6, 3), np.float32), "mask": mask}
    rng = jax.random.PRNGKey(0)

    def loss(out, **kw):
        return task.loss(_Fixed(out), {"params": {}}, batch, rng, _config(**kw))

    # without the optional keys: plain cross-entropy with the default ignore index 255
    value, metrics, _ = loss(logits)
    np.testing.assert_allclose(value, _torch_ce(logits, mask), rtol=1e-5)
    valid = mask != 255
    acc = (logits.argmax(-1) == mask)[valid].mean()
    np.testing.assert_allclose(metrics["pixel_accuracy"], acc, rtol=1e-6)
    value, _, _ = loss(logits, dice_weight=0.5)
    want = seg.cross_entropy(logits, mask) + 0.5 * seg.dice_loss(logits, mask)
    np.testing.assert_allclose(value, want, rtol=1e-6)
    # another ignore index: pixels labelled 3 count nowhere, 255 becomes out of range
    m3 = np.where(mask == 255, 0, mask)
    batch["mask"] = m3
    value, _, _ = loss(logits, ignore_index=3)
    np.testing.assert_allclose(value, seg.cross_entropy(logits, m3, ignore_index=3), rtol=1e-6)
    assert abs(float(value) - float(seg.cross_entropy(logits, m3))) > 1e-3
    # deep supervision: the heads' losses are averaged; CGM pair: + image-level CE
    batch["mask"] = mask
    value, _, _ = loss([logits, logits2], dice_weight=0.5)
    want2 = seg.segmentation_loss([logits, logits2], mask, dice_weight=0.5)
    np.testing.assert_allclose(value, want2, rtol=1e-6)
    cls = np.array([[0.0, 3.0], [2.0, -1.0]], np.float32)
    value, _, _ = loss(([logits, logits2], cls))
    np.testing.assert_allclose(value, seg.segmentation_loss(([logits, logits2], cls), mask))


def test_segmentation_task_eval_skips_padding_and_ignored_pixels():
    from jaxbones.train.tasks import get_task

    task = get_task("segmentation")
    logits, mask = _batch(seed=4, b=3)
    batch = {"image": np.zeros((3, 5, 6, 3)), "mask": mask, "valid": np.array([1, 1, 0], bool)}
    for out in (logits, (logits, np.zeros((3, 2), np.float32)), [logits, logits * 0]):
        sums = task.eval_sums(_Fixed(out), {"params": {}}, batch, _config())
        want = seg.confusion_matrix(logits[:2], mask[:2], K)
        np.testing.assert_array_equal(sums["confusion"], want)
    got = task.finalize(jax.tree_util.tree_map(np.add, sums, sums))
    np.testing.assert_allclose(got["mean_iou"], seg.mean_iou(want), rtol=1e-6)
    np.testing.assert_allclose(got["pixel_accuracy"], seg.pixel_accuracy(want), rtol=1e-6)


def test_dataset_without_a_mask_names_the_fix(tmp_path):
    from jaxbones import data

    kw = {"global_batch_size": 8, "image_size": 16, "task": "segmentation"}
    kw.update(data_dir=str(tmp_path), process_index=0, process_count=1)
    with pytest.raises(ValueError, match=r"no segmentation mask.*register_segmentation_dataset"):
        data.make_train_iterator("digits", **kw)
    with pytest.raises(ValueError, match=r"register_segmentation_dataset\('digits'"):
        data.make_eval_iterator("digits", **kw)
