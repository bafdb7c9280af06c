"""Input pipeline tests: local digits datasets (real tfds ArrayRecord, built once per session),
tfds.testing.mock_data for mnist/imagenet2012, sharding over simulated hosts, iterator
save/restore, exact evaluation, transforms, mixup/cutmix under sharding, error messages."""

import collections
import hashlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxbones import data
from jaxbones.data import datasets, pipeline, transforms

MEAN, STD = np.array(pipeline.IMAGENET_MEAN), np.array(pipeline.IMAGENET_STD)
LO, HI = ((0 - MEAN) / STD).min(), ((1 - MEAN) / STD).max()  # normalised value range


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tfds"))
    for name in ("digits", "digits_seg"):
        data.ensure_local_dataset(name, d)
    return d


def _key(image, label=None):
    """Identity of an example after a deterministic transform (hash of its bytes)."""
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest(), label


def _batches(it, n):
    return [next(it) for _ in range(n)]


def test_digits_dataset_info_and_atomic_build(data_dir, tmp_path, monkeypatch):
    info = data.dataset_info("digits", data_dir)
    assert info == {
        "num_classes": 10,
        "splits": {"train": 1437, "test": 360},
        "image_shape": (8, 8, 3),
        "task": "classification",
    }
    seg = data.dataset_info("digits_seg", data_dir)
    assert seg["num_classes"] == 11 and seg["task"] == "segmentation"
    assert not [f for f in os.listdir(data_dir) if "incomplete" in f]
    # an interrupted build leaves nothing that loads; the next call builds it completely
    d = str(tmp_path / "interrupted")

    def boom(self, *a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(datasets.Digits, "download_and_prepare", boom)
        with pytest.raises(KeyboardInterrupt):
            data.ensure_local_dataset("digits", d)
    assert not os.path.exists(os.path.join(d, "digits")) and not [
        f for f in os.listdir(d) if "incomplete" in f
    ]
    assert len(data.open_source("digits", "test", d)) == 360


def test_train_shapes_ranges_determinism(data_dir):
    kw = {"global_batch_size": 16, "image_size": 24, "data_dir": data_dir, "process_count": 1}
    kw["process_index"] = 0
    it = data.make_train_iterator("digits", seed=3, **kw)
    b = _batches(it, 2)
    assert b[0]["image"].shape == (16, 24, 24, 3) and b[0]["image"].dtype == np.float32
    assert b[0]["label"].shape == (16,) and b[0]["label"].dtype == np.int32
    assert LO - 1e-5 <= b[0]["image"].min() and b[0]["image"].max() <= HI + 1e-5
    assert set(np.concatenate([x["label"] for x in b])) <= set(range(10))
    again = _batches(data.make_train_iterator("digits", seed=3, **kw), 2)
    other = _batches(data.make_train_iterator("digits", seed=4, **kw), 2)
    for x, y in zip(b, again, strict=True):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])
    assert not np.array_equal(b[0]["image"], other[0]["image"])
    # RandAugment + random erasing: same contract, erased pixels are N(0, 1) values
    ra = data.make_train_iterator(
        "digits", augment={"randaugment": "rand-m9-mstd0.5", "reprob": 1.0}, **kw
    )
    x = next(ra)["image"]
    assert x.shape == (16, 24, 24, 3) and np.isfinite(x).all()
    gray = {"mean": (0.5,), "std": (0.25,)}
    assert next(data.make_train_iterator("digits", **gray, **kw))["image"].shape[-1] == 1
    ev = data.make_eval_iterator(
        "digits",
        global_batch_size=256,
        image_size=8,
        **gray,
        data_dir=data_dir,
        process_index=0,
        process_count=1,
    )
    assert {b["image"].shape for b in ev} == {(256, 8, 8, 1)}  # padded rows included
    mae = next(data.make_train_iterator("digits", task="mae", **kw))
    assert set(mae) == {"image"} and mae["image"].shape == (16, 24, 24, 3)


def test_uint8_images_normalised_on_device_equal_host_normalisation(data_dir):
    """image_dtype='uint8' yields the same pixels the float path normalises: the jitted
    normalize_pixels gives the float batch bit for bit (RGB and grayscale, RandAugment on),
    and random erasing, which needs float images, is refused naming the fix."""
    kw = {"global_batch_size": 16, "image_size": 24, "data_dir": data_dir, "process_count": 1}
    kw["process_index"] = 0
    for extra in ({}, {"mean": (0.5,), "std": (0.25,)}):
        aug = {"randaugment": "rand-m9-mstd0.5"}
        floats = next(data.make_train_iterator("digits", seed=5, augment=aug, **extra, **kw))
        pixels = next(
            data.make_train_iterator(
                "digits", seed=5, augment=aug, image_dtype="uint8", **extra, **kw
            )
        )
        assert pixels["image"].dtype == np.uint8
        np.testing.assert_array_equal(pixels["label"], floats["label"])
        mean, std = (
            extra.get("mean", pipeline.IMAGENET_MEAN),
            extra.get("std", pipeline.IMAGENET_STD),
        )
        on_device = jax.jit(data.normalize_pixels, static_argnums=(1, 2))(
            pixels["image"], tuple(mean), tuple(std)
        )
        np.testing.assert_array_equal(np.asarray(on_device), floats["image"])
    with pytest.raises(ValueError, match="image_dtype='float32' or reprob=0"):
        data.make_train_iterator("digits", augment={"reprob": 0.25}, image_dtype="uint8", **kw)
    with pytest.raises(ValueError, match="use one of"):
        data.make_train_iterator("digits", image_dtype="float16", **kw)


def test_iterator_save_restore(data_dir):
    kw = {"global_batch_size": 8, "image_size": 16, "data_dir": data_dir, "process_index": 0}
    it = data.make_train_iterator("digits", process_count=1, seed=1, **kw)
    _batches(it, 3)
    state = it.get_state()
    want = _batches(it, 2)
    fresh = data.make_train_iterator("digits", process_count=1, seed=1, **kw)
    fresh.set_state(state)
    got = _batches(fresh, 2)
    for x, y in zip(want, got, strict=True):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])


def test_worker_processes_match_in_process(data_dir):
    kw = {"global_batch_size": 8, "image_size": 16, "data_dir": data_dir, "process_index": 0}
    a = _batches(data.make_train_iterator("digits", process_count=1, **kw), 3)
    b = _batches(data.make_train_iterator("digits", process_count=1, worker_count=1, **kw), 3)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["image"], y["image"])
    ekw = {"global_batch_size": 128, "image_size": 8, "data_dir": data_dir, "process_count": 1}
    ekw["process_index"] = 0
    e0 = list(data.make_eval_iterator("digits", **ekw))
    e1 = list(data.make_eval_iterator("digits", worker_count=1, **ekw))
    assert len(e0) == len(e1) == 3
    for x, y in zip(e0, e1, strict=True):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["valid"], y["valid"])


@pytest.mark.parametrize("hosts", [2, 4])
def test_train_shards_disjoint_and_complete(hosts):
    n = 24
    with tfds.testing.mock_data(num_examples=n):
        src = data.open_source("mnist", "train")
        everything = collections.Counter(
            _key(
                pipeline._EvalTransform("classification", 8, MEAN, STD, 1.0, "nearest").map(src[i])[
                    "image"
                ]
            )
            for i in range(n)
        )
        seen = []
        for host in range(hosts):
            it = data.make_train_iterator(
                "mnist",
                global_batch_size=4,
                image_size=8,
                num_epochs=1,
                augment={"rrc": False, "hflip": 0.0, "interpolation": "nearest"},
                process_index=host,
                process_count=hosts,
            )
            host_keys = [_key(img) for b in it for img in b["image"]]
            assert len(host_keys) == n // hosts  # every host steps the same number of batches
            seen.append(collections.Counter(host_keys))
    total = sum(seen, collections.Counter())
    assert total == everything  # complete and, with the per-host counts, disjoint


@pytest.mark.parametrize("hosts", [1, 2, 4])
def test_eval_counts_every_example_once(data_dir, hosts):
    reference = data.make_eval_iterator(
        "digits",
        global_batch_size=360,
        image_size=8,
        crop_pct=1.0,
        data_dir=data_dir,
        process_index=0,
        process_count=1,
    )
    (ref,) = list(reference)
    assert ref["valid"].all()
    want = collections.Counter(_key(x, int(y)) for x, y in zip(ref["image"], ref["label"]))
    got = collections.Counter()
    num_batches = set()
    for host in range(hosts):
        ev = data.make_eval_iterator(  # 360 is not divisible by 56 nor by 56 / hosts
            "digits",
            global_batch_size=56,
            image_size=8,
            crop_pct=1.0,
            data_dir=data_dir,
            process_index=host,
            process_count=hosts,
        )
        batches = list(ev)
        num_batches.add(len(batches))
        assert len(batches) == len(ev)
        for b in batches:
            assert b["image"].shape[0] == 56 // hosts and b["valid"].dtype == np.bool_
            assert not b["image"][~b["valid"]].any()
            got.update(
                _key(x, int(y)) for x, y in zip(b["image"][b["valid"]], b["label"][b["valid"]])
            )
        assert len(list(ev)) == len(batches)  # re-iterable
    assert len(num_batches) == 1  # hosts step together
    assert got == want


def test_segmentation_joint_crop_and_flip(data_dir):
    kw = {"global_batch_size": 8, "image_size": 20, "task": "segmentation", "data_dir": data_dir}
    kw.update(process_index=0, process_count=1)
    # nearest for the image too: the mask must equal the ink threshold of the cropped image
    it = data.make_train_iterator(
        "digits_seg", augment={"interpolation": "nearest", "scale": (0.3, 1.0)}, **kw
    )
    b = next(it)
    assert b["mask"].shape == (8, 20, 20) and b["mask"].dtype == np.int32
    u8 = np.round((b["image"][..., 0] * STD[0] + MEAN[0]) * 255)
    ink = u8 >= 64  # ink >= 4/16 (datasets._DIGITS_INK_THRESHOLD) in 0..255 units
    np.testing.assert_array_equal(b["mask"] > 0, ink)
    for m in b["mask"]:
        assert len(set(np.unique(m)) - {0}) <= 1  # one digit class per image
    plain = {"rrc": False, "hflip": 0.0}
    a = next(data.make_train_iterator("digits_seg", augment=plain, **kw))
    f = next(data.make_train_iterator("digits_seg", augment={**plain, "hflip": 1.0}, **kw))
    np.testing.assert_array_equal(a["image"][:, :, ::-1], f["image"])
    np.testing.assert_array_equal(a["mask"][:, :, ::-1], f["mask"])
    ev = next(iter(data.make_eval_iterator("digits_seg", **{**kw, "task": "segmentation"})))
    assert ev["mask"].shape == (8, 20, 20) and ev["mask"].max() <= 10


def test_imagenet_mock_variable_size_images():
    with tfds.testing.mock_data(num_examples=6):
        info = data.dataset_info("imagenet2012")
        assert info["num_classes"] == 1000 and info["image_shape"] == (None, None, 3)
        it = data.make_train_iterator(
            "imagenet2012",
            global_batch_size=4,
            image_size=32,
            process_index=0,
            process_count=1,
            augment={"randaugment": "rand-m9-mstd0.5-inc1", "reprob": 0.25},
        )
        b = next(it)
        assert b["image"].shape == (4, 32, 32, 3) and np.isfinite(b["image"]).all()
        ev = list(
            data.make_eval_iterator(
                "imagenet2012",
                split="validation",
                global_batch_size=4,
                image_size=32,
                process_index=0,
                process_count=1,
            )
        )
        assert [int(b["valid"].sum()) for b in ev] == [4, 2]
        assert ev[0]["image"].shape == (4, 32, 32, 3)


def test_transforms():
    rng = np.random.default_rng(0)
    for _ in range(50):
        left, top, w, h = transforms.rrc_box(500, 375, rng)
        assert 0 <= left and left + w <= 500 and 0 <= top and top + h <= 375
        assert 0.08 * 500 * 375 * 0.9 <= w * h and 3 / 4 * 0.95 <= w / h <= 4 / 3 * 1.05
    # impossible scale -> torchvision fallback: center crop clamped to the max ratio
    assert transforms.rrc_box(400, 100, rng, scale=(5.0, 6.0)) == (133, 0, 133, 100)
    img = transforms.to_pil(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8))
    out = transforms.resize_center_crop(img, 224, 0.875)
    assert out.size == (224, 224)
    # resize shorter side 375 -> 256 (500 -> 341), crop offsets round((341-224)/2) = 58
    ref = img.resize((341, 256), transforms.INTERPOLATIONS["bilinear"]).crop((58, 16, 282, 240))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(ref))
    x = transforms.normalize(img, MEAN, STD)
    np.testing.assert_allclose(x[0, 0], (np.asarray(img)[0, 0] / 255 - MEAN) / STD, rtol=1e-5)
    # row-wise, the same float32 operations as numpy's per-channel broadcast: images, batches,
    # one channel, and a channel count that does not match
    offset, scale = transforms.pixel_affine(MEAN, STD)
    np.testing.assert_array_equal(x, (np.asarray(img, np.float32) - offset) * scale)
    batch = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        transforms.normalize(batch, MEAN, STD), (batch.astype(np.float32) - offset) * scale
    )
    grey = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    offset1, scale1 = transforms.pixel_affine((0.3,), (0.2,))
    np.testing.assert_array_equal(
        transforms.normalize(grey, (0.3,), (0.2,)),
        (grey[..., None].astype(np.float32) - offset1) * scale1,
    )
    with pytest.raises(ValueError, match="one per channel"):
        transforms.normalize(grey, MEAN, STD)
    erased = transforms.random_erasing(x, np.random.default_rng(1), prob=1.0)
    changed = (erased != x).any(-1)
    assert 0.02 * 0.9 <= changed.mean() <= 1 / 3 * 1.1
    ra = transforms.RandAugment("rand-m9-mstd0.5", interp="bilinear")
    assert (ra.magnitude, ra.num_layers, ra.magnitude_std) == (9.0, 2, 0.5)
    for name, (op, level) in ra._ops.items():  # every op runs and keeps size/mode
        arg = level(9.0, rng, img) if level else None
        res = op(img, arg, fill=ra.fill, resample=transforms.INTERPOLATIONS["bilinear"])
        assert res.size == img.size and res.mode == "RGB", name
    assert set(ra._ops) == set(transforms.RAND_OPS)
    with pytest.raises(ValueError, match="unknown section"):
        transforms.RandAugment("rand-m9-q3")


_DEFAULTS = {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "prob": 1.0, "label_smoothing": 0.1}
_jit_mixup = jax.jit(data.mixup_cutmix, static_argnames=("num_classes",))


def _mixup(rng, images, labels, num_classes, **kw):
    """Every setting passed as a traced argument: one compilation serves all calls below."""
    return _jit_mixup(rng, images, labels, num_classes=num_classes, **{**_DEFAULTS, **kw})


def test_sample_beta_distribution():
    import scipy.stats

    draw = jax.jit(jax.vmap(data.mixup.sample_beta, in_axes=(0, None)))
    keys = jax.random.split(jax.random.key(0), 20_000)
    for a in (0.8, 3.0):
        s = np.asarray(draw(keys, a), np.float64)
        assert ((0 <= s) & (s <= 1)).all()
        assert abs(s.mean() - 0.5) < 0.01
        np.testing.assert_allclose(s.var(), 1 / (4 * (2 * a + 1)), rtol=0.05)
        assert scipy.stats.kstest(s, scipy.stats.beta(a, a).cdf).pvalue > 1e-3


def test_mixup_cutmix_label_mass_and_sharding():
    b, h = 16, 12
    images = jnp.broadcast_to(jnp.arange(b, dtype=jnp.float32)[:, None, None, None], (b, h, h, 3))
    labels = jnp.arange(b) % 10
    cut = {"mixup_alpha": 0.0, "label_smoothing": 0.0}
    mix = {"cutmix_alpha": 0.0, "label_smoothing": 0.0}
    for kw in ({}, cut, mix):
        for seed in range(3):
            x, y = _mixup(jax.random.key(seed), images, labels, num_classes=10, **kw)
            assert y.shape == (b, 10) and y.dtype == jnp.float32 and x.shape == images.shape
            np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-6)
    # cutmix only: every pixel comes from the image or its partner b-1-i, and the partner's
    # label mass equals the fraction of pasted pixels
    x, y = _mixup(jax.random.key(7), images, labels, num_classes=10, **cut)
    own = np.asarray(x) == np.arange(b)[:, None, None, None]
    partner = np.asarray(x) == (b - 1 - np.arange(b))[:, None, None, None]
    assert (own | partner).all() and 0 < partner.mean() < 1
    np.testing.assert_allclose(partner[0].mean(), float(y[0, labels[-1]]), atol=1e-6)
    # mixup only: x = lam * own + (1 - lam) * partner with lam = own-label mass
    x, y = _mixup(jax.random.key(7), images, labels, num_classes=10, **mix)
    lam = float(y[0, labels[0]])
    assert 0 < lam < 1
    np.testing.assert_allclose(x[0], lam * 0 + (1 - lam) * (b - 1), rtol=1e-5)
    # prob 0: images untouched, labels only smoothed (0.9 + 0.1 / 10 on the label)
    x, y = _mixup(jax.random.key(7), images, labels, num_classes=10, prob=0.0)
    np.testing.assert_array_equal(x, images)
    np.testing.assert_allclose(y.max(-1), 0.91, rtol=1e-6)
    # same result on 1 device and with the batch sharded over 8
    imgs = jax.random.normal(jax.random.key(1), (b, h, h, 3))
    single = [_mixup(jax.random.key(s), imgs, labels, num_classes=10) for s in range(4)]
    mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
    sh = NamedSharding(mesh, PartitionSpec("data"))
    imgs_s, labels_s = jax.device_put(imgs, sh), jax.device_put(labels, sh)
    assert len(imgs_s.sharding.device_set) == 8
    for s, (x1, y1) in enumerate(single):
        x8, y8 = _mixup(jax.random.key(s), imgs_s, labels_s, num_classes=10)
        assert len(x8.sharding.device_set) == 8
        np.testing.assert_allclose(np.asarray(x8), np.asarray(x1), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(np.asarray(y8), np.asarray(y1), rtol=1e-6, atol=1e-7)


def test_error_messages(tmp_path):
    empty = str(tmp_path / "nowhere")
    with pytest.raises(data.DatasetNotPreparedError, match="prepare_imagenet --dataset mnist"):
        data.open_source("mnist", "train", empty)
    with pytest.raises(data.DatasetNotPreparedError, match="ILSVRC2012_img_train.tar"):
        data.make_train_iterator(
            "imagenet2012",
            global_batch_size=8,
            image_size=32,
            data_dir=empty,
            process_index=0,
            process_count=1,
        )
    with pytest.raises(data.DatasetNotPreparedError, match=empty):
        data.dataset_info("imagenet2012", empty)
    with pytest.raises(ValueError, match="Unknown dataset 'no_such_set'"):
        data.open_source("no_such_set", "train", empty)
    with pytest.raises(ValueError, match="augment key 'sclae'"):
        data.make_train_iterator(
            "digits",
            global_batch_size=8,
            image_size=8,
            augment={"sclae": (0.1, 1)},
            process_index=0,
            process_count=1,
            data_dir=empty,
        )
    with pytest.raises(ValueError, match="divisible"):
        data.make_eval_iterator(
            "digits",
            global_batch_size=6,
            image_size=8,
            process_index=0,
            process_count=4,
            data_dir=empty,
        )


class _Sign:
    """numpy-Generator stand-in whose random() fixes the sign draws of RandAugment levels."""

    def __init__(self, value):
        self.value = value

    def random(self):
        return self.value


@pytest.mark.parametrize("increasing", [False, True])
def test_randaugment_ops_match_timm(increasing, monkeypatch):
    from timm.data import auto_augment as aa

    img = transforms.to_pil(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    ra = transforms.RandAugment(f"rand-m9-inc{int(increasing)}")
    hp = {"translate_const": 100, "img_mean": ra.fill}
    names = aa._RAND_INCREASING_TRANSFORMS if increasing else aa._RAND_TRANSFORMS
    assert len(names) == len(transforms.RAND_OPS)
    bilinear = transforms.INTERPOLATIONS["bilinear"]
    for sign in (0.0, 0.9):  # timm negates when random() > 0.5, as we do
        monkeypatch.setattr(aa.random, "random", lambda s=sign: s)
        for timm_name, name in zip(names, transforms.RAND_OPS, strict=True):
            op, level = ra._ops[name]
            arg = level(9.0, _Sign(sign), img) if level else None
            timm_level = aa.LEVEL_TO_ARG[timm_name]
            targs = timm_level(9.0, hp) if timm_level else ()
            want = aa.NAME_TO_OP[timm_name](img, *targs, fillcolor=ra.fill, resample=bilinear)
            got = op(img, arg, fill=ra.fill, resample=bilinear)
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=timm_name)


@pytest.mark.parametrize("interp", ["bilinear", "bicubic"])
def test_crops_match_timm_and_torchvision(interp):
    import torchvision.transforms.functional as TF
    from timm.data import create_transform

    img = transforms.to_pil(
        np.random.default_rng(1).integers(0, 256, (375, 500, 3), dtype=np.uint8)
    )
    ref = create_transform(224, is_training=False, crop_pct=0.875, interpolation=interp)
    want = ref(img).numpy().transpose(1, 2, 0)
    tf = pipeline._EvalTransform("classification", 224, MEAN, STD, 0.875, interp)
    got = tf.map({"image": np.asarray(img), "label": 3})["image"]
    np.testing.assert_allclose(got, want, atol=1e-5)
    left, top, w, h = transforms.rrc_box(500, 375, np.random.default_rng(2))
    mode = getattr(TF.InterpolationMode, interp.upper())
    want = TF.resized_crop(img, top, left, h, w, [96, 96], mode)
    box = (left, top, left + w, top + h)
    got = transforms.crop_resize(img, box, 96, transforms.INTERPOLATIONS[interp])
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def _china_jpeg() -> bytes:
    """A real photo: scikit-learn's china.jpg (640 x 427), read without importing sklearn."""
    import importlib.util

    sklearn_dir = importlib.util.find_spec("sklearn").submodule_search_locations[0]
    with open(os.path.join(sklearn_dir, "datasets", "images", "china.jpg"), "rb") as f:
        return f.read()


def test_jpeg_bytes_decode_to_pils_pixels(monkeypatch):
    """Encoded bytes decode to exactly PIL's RGB pixels, at full size and at each reduced DCT
    scale (PIL's draft), whichever decoder takes them: TurboJPEG for YCbCr and grey JPEGs,
    PIL for CMYK JPEGs, PNGs and damaged files (which raise PIL's own error)."""
    import io

    from PIL import Image

    turbo_calls = []
    decode_jpeg = transforms.simplejpeg.decode_jpeg
    monkeypatch.setattr(
        transforms.simplejpeg,
        "decode_jpeg",
        lambda *a, **k: turbo_calls.append(1) or decode_jpeg(*a, **k),
    )

    def encode(img, fmt="JPEG", **kw):
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kw)
        return buf.getvalue()

    def pil_decode(raw, reduce=1):
        img = Image.open(io.BytesIO(raw))
        if reduce > 1:
            img.draft(None, (img.width // reduce, img.height // reduce))
        return np.asarray(img.convert("RGB"))

    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (61, 83, 3), np.uint8))
    turbo = {
        "photo 4:2:0": _china_jpeg(),
        "4:4:4": encode(rgb, subsampling=0),
        "4:2:2": encode(rgb, subsampling=1),
        "progressive": encode(rgb, progressive=True),
        "grey": encode(rgb.convert("L")),
    }
    pil_only = {"cmyk": encode(rgb.convert("CMYK")), "png": encode(rgb, "PNG")}
    for name, raw in {**turbo, **pil_only}.items():
        for reduce in (1, 2, 4, 8):
            turbo_calls.clear()
            got = transforms.to_pil(raw, reduce)
            np.testing.assert_array_equal(np.asarray(got), pil_decode(raw, reduce), name)
            assert len(turbo_calls) == (name in turbo), (name, reduce)
            if name != "png":
                w, h = transforms.image_size(raw)
                assert got.size == (-(-w // reduce), -(-h // reduce)), (name, reduce)
    damaged = turbo["4:4:4"][: len(turbo["4:4:4"]) // 2]
    with pytest.raises(OSError, match="truncated"):
        np.asarray(transforms.to_pil(damaged))  # PIL decodes lazily


def _exact_and_fast(exact, fast, raw, cfg, seeds):
    """(seed, exact image, fast image, crop box (left, top, w, h)) of china.jpg `raw` per seed;
    both transforms must draw the same random numbers (hence the same boxes and flips)."""
    for seed in seeds:
        rngs = [np.random.default_rng(seed) for _ in range(3)]
        a = exact.random_map({"image": raw, "label": 1}, rngs[0])["image"]
        b = fast.random_map({"image": raw, "label": 1}, rngs[1])["image"]
        assert rngs[0].bit_generator.state == rngs[1].bit_generator.state
        yield seed, a, b, transforms.rrc_box(640, 427, rngs[2], cfg["scale"], cfg["ratio"])


def test_jpeg_draft_same_boxes_close_pixels():
    """The reduced-size JPEG decode option draws the same random numbers (so the same crop
    boxes and flips), equals the exact path where the crop is too small to reduce, and stays
    within a few grey levels elsewhere (a real photo: scikit-learn's china.jpg, 640x427)."""
    assert transforms.draft_scale((0, 0, 500, 375), 112) == 2
    assert transforms.draft_scale((10, 0, 1010, 900), 112) == 8
    assert transforms.draft_scale((0, 0, 447, 447), 224) == 1
    raw = _china_jpeg()
    cfg = pipeline._augment_config("classification", None)
    exact = pipeline._TrainTransform("classification", 112, MEAN, STD, cfg)
    fast = pipeline._TrainTransform("classification", 112, MEAN, STD, {**cfg, "jpeg_draft": True})
    scales = collections.Counter()
    for seed, a, b, (left, top, w, h) in _exact_and_fast(exact, fast, raw, cfg, range(12)):
        scale = transforms.draft_scale((left, top, left + w, top + h), 112)
        scales[scale] += 1
        diff = np.abs(a - b) * STD * 255  # grey levels
        if scale == 1:
            np.testing.assert_array_equal(a, b)
        else:
            psnr = 10 * np.log10(255**2 / np.mean(diff**2))
            assert diff.mean() < 4 and psnr > 28, (seed, diff.mean(), psnr)
    assert scales[1] and scales[2], scales  # both paths were taken


@pytest.mark.parametrize("interp", ["bilinear", "bicubic"])
def test_opencv_resize_same_boxes_close_pixels(interp, monkeypatch):
    """``resize_backend='opencv'`` draws the same random numbers as the exact path and its
    crops stay close to PIL's: within rounding where the crop grows (bilinear), a few grey
    levels on average where it shrinks or does both (without the antialiasing, plain
    interpolation, shrinking crops fall to 25-28 dB and 5-7 grey levels; a real photo:
    china.jpg, 640 x 427: at 224 px crops shrink, grow or both; at 112 px with
    ``jpeg_draft`` large crops decode reduced). A missing OpenCV or an unknown backend is a
    clear error."""
    import sys

    raw = _china_jpeg()
    cfg = pipeline._augment_config("classification", {"interpolation": interp})
    kinds = collections.Counter()
    for size, draft in ((224, False), (112, True)):
        exact = pipeline._TrainTransform("classification", size, MEAN, STD, cfg)
        option = {**cfg, "resize_backend": "opencv", "jpeg_draft": draft}
        fast = pipeline._TrainTransform("classification", size, MEAN, STD, option)
        for seed, a, b, (left, top, w, h) in _exact_and_fast(exact, fast, raw, cfg, range(40)):
            kind = "grow" if max(w, h) <= size else "shrink" if min(w, h) >= size else "both"
            if draft:
                kind = f"reduced 1/{transforms.draft_scale((left, top, left + w, top + h), size)}"
            kinds[kind] += 1
            diff = np.abs(a - b) * STD * 255  # grey levels
            if kind == "grow" and interp == "bilinear":
                assert diff.max() < 1.01, (seed, diff.max())
            psnr = 10 * np.log10(255**2 / max(np.mean(diff**2), 1e-12))
            # a 1/2-size decode then a 4x smaller output: the most detail of all is lost
            mean_bound, psnr_bound = (10, 24) if kind == "reduced 1/2" else (3, 33)
            assert diff.mean() < mean_bound and psnr > psnr_bound, (seed, kind, psnr)
            if not draft:  # INTER_AREA straight to size misplaces growing axes' pixels by ~150
                assert diff.max() < 100, (seed, kind, diff.max())
    assert {"grow", "shrink", "both", "reduced 1/2"} <= set(kinds), kinds
    with pytest.raises(ValueError, match="resize_backend 'cv2'.*'pil'"):
        pipeline._augment_config("classification", {"resize_backend": "cv2"})
    monkeypatch.setitem(sys.modules, "cv2", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install opencv-python-headless"):
        pipeline._augment_config("classification", {"resize_backend": "opencv"})


def test_array_flip_is_a_contiguous_copy(monkeypatch):
    """A flipped array is a C-contiguous copy (a negative-stride view makes the batch's stack
    copy slowly), with or without OpenCV installed."""
    import sys

    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (5, 7, 3), np.uint8),
        rng.integers(0, 256, (5, 7, 1), np.uint8),
        rng.integers(0, 256, (5, 7), np.uint8),
        rng.standard_normal((5, 7, 3)).astype(np.float32),
    ]
    for opencv in (True, False):
        if not opencv:
            monkeypatch.setitem(sys.modules, "cv2", None)  # as if not installed
        for x in images:
            flipped = transforms.hflip(x)
            assert flipped.flags.c_contiguous and flipped.dtype == x.dtype, (opencv, x.shape)
            np.testing.assert_array_equal(flipped, x[:, ::-1])


def test_oxford_pet_mock_segmentation_masks():
    with tfds.testing.mock_data(num_examples=4):
        src = data.open_source("oxford_iiit_pet", "train")
        raw = np.asarray(src[0]["segmentation_mask"])[..., 0]
        ev = data.make_eval_iterator(
            "oxford_iiit_pet",
            split="train",
            global_batch_size=4,
            image_size=16,
            task="segmentation",
            crop_pct=1.0,
            interpolation="bilinear",
            process_index=0,
            process_count=1,
        )
        b = next(iter(ev))
    assert b["image"].shape == (4, 16, 16, 3) and b["mask"].shape == (4, 16, 16)
    # stored 1..3 (pet, background, border) become 0..2: nearest resize/crop, then -1
    near = transforms.INTERPOLATIONS["nearest"]
    m = transforms.center_crop(
        transforms.resize_shorter(transforms.Image.fromarray(raw), 16, near), 16
    )
    np.testing.assert_array_equal(b["mask"][0], np.asarray(m, np.int32) - 1)
