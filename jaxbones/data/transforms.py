"""Per-example image transforms (PIL on uint8 images, numpy for the rest).

Semantics follow torchvision/timm, which the PyTorch references were trained with:
  random_resized_crop   torchvision RandomResizedCrop.get_params (10 tries, then the
                        center-crop fallback clamped to the ratio range), one PIL resize.
                        ``draft_crop_resize`` (an option) decodes the same box from a JPEG
                        at a reduced DCT scale instead, ``opencv_crop_resize`` (an option)
                        resizes it with OpenCV: not pixel-exact, faster.
  resize_center_crop    timm eval (crop_mode): 'center' shorter side -> floor(size / crop_pct)
                        then centre crop; 'squash' both sides -> floor(size / crop_pct)
                        (aspect not kept) then centre crop; 'border' longer side ->
                        floor(size / crop_pct), then centre crop or pad with `fill`.
  RandAugment           timm `rand-m9-mstd0.5[-n2][-p0.5][-inc1][-mmax10]`: n ops drawn with
                        replacement from AutoContrast, Equalize, Invert, Rotate, Posterize,
                        Solarize, SolarizeAdd, Color, Contrast, Brightness, Sharpness, ShearX,
                        ShearY, TranslateXRel, TranslateYRel (`inc1`: the *Increasing variants),
                        each applied with probability p; magnitude ~ N(m, mstd) clipped to
                        [0, mmax]; geometric ops fill with the dataset mean and resample
                        bilinear or bicubic at random.
  random_erasing        timm RandomErasing(mode='pixel'): area 2%..1/3, log-uniform aspect
                        0.3..3.3, 10 tries, per-pixel N(0, 1) fill on the normalised image.
All randomness comes from the numpy Generator that grain hands each record (seeded by the
pipeline seed and the record's position), so every example is reproducible.
"""

from __future__ import annotations

import io
import math
import re

import numpy as np
import simplejpeg
from PIL import Image, ImageEnhance, ImageOps

__all__ = [
    "CROP_MODES",
    "INTERPOLATIONS",
    "RandAugment",
    "draft_crop_resize",
    "hflip",
    "image_size",
    "normalize",
    "opencv_crop_resize",
    "pixel_affine",
    "pixels",
    "random_erasing",
    "random_resized_crop",
    "resize_center_crop",
    "to_pil",
    "to_pixels",
]

INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


# JPEG colour spaces that libjpeg-turbo's TurboJPEG API (simplejpeg) turns into the same RGB
# pixels as PIL: both run libjpeg-turbo's decoder with its default (accurate integer) DCT and
# smooth chroma upsampling, and grey replicates into R, G and B in both. CMYK and YCCK JPEGs
# and any other format stay with PIL.
_TURBOJPEG_COLORSPACES = ("YCbCr", "Gray")


def _turbojpeg_size(data) -> tuple[int, int] | None:
    """(width, height) of JPEG bytes that TurboJPEG decodes as PIL would, else None."""
    if data[:2] != b"\xff\xd8":
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:  # a header TurboJPEG cannot read: PIL decides what it is
        return None
    return (width, height) if colorspace in _TURBOJPEG_COLORSPACES else None


def image_size(image) -> tuple[int, int]:
    """(width, height) of anything ``to_pil`` takes, reading only the header of encoded bytes."""
    if isinstance(image, bytes | bytearray):
        size = _turbojpeg_size(image)
        return size if size else Image.open(io.BytesIO(image)).size
    if isinstance(image, Image.Image):
        return image.size
    shape = np.shape(image)
    return shape[1], shape[0]


def _turbojpeg_pixels(data, reduce: int) -> np.ndarray | None:
    """RGB uint8 pixels of JPEG bytes through TurboJPEG, or None where PIL must decode."""
    size = _turbojpeg_size(data)
    if size is None:
        return None
    w, h = size
    try:  # min sizes pick the DCT scale: the smallest that keeps them is 1/reduce
        return simplejpeg.decode_jpeg(data, min_width=-(-w // reduce), min_height=-(-h // reduce))
    except ValueError:  # damaged data: PIL's decoder raises or recovers as it would
        return None


def to_pil(image, reduce: int = 1) -> Image.Image:
    """uint8 [H, W, C] array (C 1 or 3), encoded bytes or a PIL image -> RGB PIL image.

    JPEG bytes in YCbCr or grey decode through TurboJPEG (simplejpeg): the pixels PIL's
    decoder gives, in about four fifths of its time; everything else decodes with PIL.
    ``reduce`` in (2, 4, 8) decodes a JPEG at DCT scale 1/reduce instead
    (ceil(width / reduce) x ceil(height / reduce) pixels, the same in both decoders);
    images that are not JPEG bytes ignore it.
    """
    if isinstance(image, Image.Image):
        img = image
    elif isinstance(image, bytes | bytearray):
        arr = _turbojpeg_pixels(image, reduce)
        if arr is not None:
            return Image.fromarray(arr)
        img = Image.open(io.BytesIO(image))
        if reduce > 1 and img.format == "JPEG":
            img.draft(None, (img.width // reduce, img.height // reduce))
    else:
        arr = np.asarray(image)
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        img = Image.fromarray(arr.astype(np.uint8, copy=False))
    return img if img.mode == "RGB" else img.convert("RGB")


def to_pixels(image, reduce: int = 1) -> np.ndarray:
    """``to_pil`` as uint8 [H, W, 3] RGB pixels, without a PIL image where none is needed."""
    if isinstance(image, bytes | bytearray):
        arr = _turbojpeg_pixels(image, reduce)
        if arr is not None:
            return arr
    elif isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.shape[-1:] == (3,):
        return image
    return np.asarray(to_pil(image, reduce))


def interpolation(name: str, rng: np.random.Generator | None = None):
    """PIL resample filter; 'random' picks bilinear or bicubic per image (timm)."""
    if name == "random":
        return INTERPOLATIONS["bilinear" if rng.random() < 0.5 else "bicubic"]
    if name not in INTERPOLATIONS:
        raise ValueError(f"interpolation {name!r}: use one of {[*INTERPOLATIONS, 'random']}")
    return INTERPOLATIONS[name]


def rrc_box(width, height, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """(left, top, w, h) of an Inception-style crop (torchvision RandomResizedCrop.get_params)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, w, h
    # fallback: the largest center crop with an aspect ratio inside `ratio`
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def random_resized_crop(img, size, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), interp="bilinear"):
    """Random crop of area fraction `scale` and aspect `ratio`, resized to size x size."""
    left, top, w, h = rrc_box(img.width, img.height, rng, scale, ratio)
    return crop_resize(img, (left, top, left + w, top + h), size, interpolation(interp, rng))


def crop_resize(img, box, size, resample):
    """Crop `box` (left, top, right, bottom) then resize to size x size, as torchvision's
    resized_crop. (PIL's `resize(box=...)` differs: its filter reads pixels outside the box.)
    `img`: a PIL image (kept in its mode) or anything else ``to_pil`` takes."""
    if not isinstance(img, Image.Image):
        img = to_pil(img)
    if box != (0, 0, img.width, img.height):
        img = img.crop(box)
    return img.resize((size, size), resample)


DRAFT_SCALES = (8, 4, 2, 1)  # the DCT scalings libjpeg decodes to (1/8, 1/4, 1/2, 1)


def draft_scale(box, size: int) -> int:
    """The largest JPEG reduction s (8, 4, 2 or 1) at which the crop `box` (left, top, right,
    bottom) keeps at least size x size pixels, so the resize still only shrinks."""
    w, h = box[2] - box[0], box[3] - box[1]
    return next(s for s in DRAFT_SCALES if s == 1 or min(w, h) >= size * s)


def draft_crop_resize(image, box, size, resample):
    """`crop_resize` that decodes a JPEG at a reduced size first (the fast train option).

    For JPEG bytes, ``to_pil`` decodes at the DCT scale 1/s of ``draft_scale`` (the crop
    keeps >= size pixels per side), and one PIL resize reads the crop's box, in the reduced
    image's coordinates, straight to size x size (no separate crop copy). Reduced pixel i
    covers original pixels [i s, (i + 1) s), so the box is the same region of the picture;
    the pixels differ from the full decode's by the DCT-domain downscaling
    (``scripts/bench_input.py --compare`` measures it). Anything else (s = 1, decoded
    images, other formats) takes ``crop_resize``, pixel for pixel.
    """
    s = draft_scale(box, size)
    width = image_size(image)[0]
    img = to_pil(image, reduce=s)
    if img.width == width:  # not reduced (s = 1, or not a JPEG)
        return crop_resize(img, box, size, resample)
    return img.resize((size, size), resample, box=tuple(v / s for v in box))


RESIZE_BACKENDS = ("pil", "opencv")


def import_opencv():
    try:
        import cv2
    except ImportError as e:
        raise ImportError(
            "resize_backend='opencv' needs OpenCV: pip install opencv-python-headless "
            "(or jaxbones[opencv]), or use resize_backend='pil'"
        ) from e
    return cv2


def opencv_crop_resize(image, box, size, resample, draft: bool = False) -> np.ndarray:
    """`crop_resize` through OpenCV (the fast train option ``resize_backend='opencv'``).

    A crop that shrinks by a factor s (the larger of its two sides over ``size``) is
    interpolated (bilinear or bicubic) to k * size pixels a side, k = ceil(s), and k x k
    blocks are then averaged (OpenCV's integer-factor ``INTER_AREA``): an antialiasing
    filter about s pixels wide, as PIL's is. A crop that shrinks along neither axis is
    interpolated straight to size, at PIL's pixel centres. Random crops of 500 x 375 JPEGs
    to 224: 0.30 ms against PIL's 0.74 ms (one core), and closer to PIL's pixels than
    ``INTER_AREA`` alone (44.5 against 43.2 dB, bilinear); the pixels differ from
    torchvision's by the filter's shape (``scripts/bench_input.py --compare`` measures it).
    ``draft=True`` decodes a JPEG at the DCT scale of ``draft_scale`` first, the box
    rounded to whole reduced pixels.
    `image`: anything ``to_pixels`` takes; ``resample``: a PIL filter (``INTERPOLATIONS``).
    Returns uint8 [size, size, 3] pixels (no PIL image unless a later step needs one).
    """
    cv2 = import_opencv()
    interp = {
        Image.Resampling.NEAREST: cv2.INTER_NEAREST_EXACT,
        Image.Resampling.BILINEAR: cv2.INTER_LINEAR,
        Image.Resampling.BICUBIC: cv2.INTER_CUBIC,
    }[resample]
    s = draft_scale(box, size) if draft else 1
    width = image_size(image)[0]
    pixels = to_pixels(image, reduce=s)
    if pixels.shape[1] < width:  # decoded at 1/s: the box in reduced pixels
        box = tuple(round(v / s) for v in box)
    left, top, right, bottom = box
    x = pixels[top:bottom, left:right]
    block = -(-max(right - left, bottom - top) // size)  # ceil: 1 where no axis shrinks
    if resample != Image.Resampling.NEAREST and block > 1:
        # square blocks: OpenCV averages them on a fast path only when both factors are
        # the same integer (448 x 448 -> 224: 62 us; 448 x 224 -> 224: 584 us)
        x = cv2.resize(x, (block * size, block * size), interpolation=interp)
        interp = cv2.INTER_AREA
    return cv2.resize(x, (size, size), interpolation=interp)


def resize_shorter(img, short, resample):
    """Resize so the shorter side is `short` (torchvision Resize(int) arithmetic)."""
    w, h = img.size
    if w <= h:
        size = (short, int(short * h / w))
    else:
        size = (int(short * w / h), short)
    return img if size == (w, h) else img.resize(size, resample)


def center_crop(img, size):
    """torchvision CenterCrop (round((H - size) / 2) offsets); images must be >= size."""
    w, h = img.size
    top, left = round((h - size) / 2.0), round((w - size) / 2.0)
    return img.crop((left, top, left + size, top + size))


CROP_MODES = ("center", "squash", "border")


def resize_center_crop(img, size, crop_pct=0.875, interp="bilinear", crop_mode="center", fill=0):
    """timm's eval transform for ``crop_mode`` (module docstring) to size x size; ``interp`` a
    name or a PIL filter; ``fill`` the pad colour of 'border' (timm: the dataset mean)."""
    resample = interpolation(interp) if isinstance(interp, str) else interp
    scale = math.floor(size / crop_pct)
    if crop_mode == "center":
        img = resize_shorter(img, scale, resample)
    elif crop_mode == "squash":
        img = img.resize((scale, scale), resample)
    elif crop_mode == "border":
        # timm ResizeKeepRatio(longest=1): one ratio for both sides, rounded per side
        ratio = max(img.width, img.height) / scale
        img = img.resize((round(img.width / ratio), round(img.height / ratio)), resample)
        img = pad_to(img, size, fill)
    else:
        raise ValueError(f"crop_mode {crop_mode!r}: use one of {CROP_MODES}")
    return center_crop(img, size)


def pad_to(img, size, fill=0):
    """Pads an image smaller than size x size on both sides (left/top get the smaller half),
    as timm's CenterCropOrPad before it crops."""
    w, h = img.size
    if w >= size and h >= size:
        return img
    new_w, new_h = max(w, size), max(h, size)
    out = Image.new(img.mode, (new_w, new_h), fill)
    out.paste(img, ((new_w - w) // 2, (new_h - h) // 2))
    return out


def hflip(img):
    """Left-right flip of a PIL image, or of [H, W, ...] pixels as a new C-contiguous array.

    Not a view: numpy copies a negative-stride uint8 [224, 224, 3] view in 0.36 ms, and
    every consumer copies (the batch's ``np.stack``, ``normalize``'s reshape), while
    OpenCV's flip writes it in 7 us. Arrays come from the opencv resize backend, so OpenCV
    is there; without it numpy copies.
    """
    if isinstance(img, np.ndarray):
        try:
            import cv2
        except ImportError:
            return np.ascontiguousarray(img[:, ::-1])
        return cv2.flip(img, 1).reshape(img.shape)  # cv2 drops a trailing channel axis of 1
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def pixel_affine(mean, std) -> tuple[np.ndarray, np.ndarray]:
    """(offset, scale), float32 per channel, that take uint8 pixels x to
    (x / 255 - mean) / std as (x - offset) * scale: the one formula of the host's
    ``normalize`` and the device's ``jaxbones.data.normalize_pixels``, so they agree bit
    for bit (a product, because XLA turns division by a constant into one)."""
    std = np.asarray(std, np.float64)
    return np.asarray(mean, np.float32) * 255.0, (1.0 / (std * 255.0)).astype(np.float32)


def pixels(img) -> np.ndarray:
    """An image's uint8 pixels, [H, W, C] (a grayscale image gets C = 1)."""
    x = np.asarray(img)
    return x[..., None] if x.ndim == 2 else x


def normalize(img, mean, std) -> np.ndarray:
    """uint8 image [H, W, C] (or images [..., H, W, C]) -> float32 (x / 255 - mean) / std."""
    offset, scale = pixel_affine(mean, std)
    x = pixels(img)
    w, c = x.shape[-2:]
    if offset.size not in (1, c):
        raise ValueError(
            f"mean/std have {offset.size} channels, the image {c}: give one per channel"
        )
    # As rows of W*C values with the channel constants tiled along a row, numpy's inner loop
    # runs over W*C pixels instead of C (4-7x faster at 224x224x3); the float32 operations per
    # pixel, (x - offset) * scale, are the same, and updating one new array in place keeps
    # two temporaries away.
    rows = x.reshape(-1, w * c).astype(np.float32)
    rows -= np.tile(np.broadcast_to(offset, (c,)), w)
    rows *= np.tile(np.broadcast_to(scale, (c,)), w)
    return rows.reshape(x.shape)


def random_erasing(x, rng, prob=0.25, min_area=0.02, max_area=1 / 3, min_aspect=0.3):
    """timm RandomErasing(mode='pixel', max_count=1) on a normalised float [H, W, C] array."""
    if prob <= 0 or rng.random() > prob:
        return x
    height, width, chans = x.shape
    area = height * width
    log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
    for _ in range(10):
        target = rng.uniform(min_area, max_area) * area
        aspect = math.exp(rng.uniform(*log_aspect))
        h = round(math.sqrt(target * aspect))
        w = round(math.sqrt(target / aspect))
        if w < width and h < height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            x = x.copy()
            x[top : top + h, left : left + w] = rng.standard_normal((h, w, chans), np.float32)
            return x
    return x


# ---------------------------------------------------------------------------------------------
# RandAugment (timm semantics; levels map magnitude m in [0, 10] to op arguments)


def _negate(v, rng):
    return -v if rng.random() > 0.5 else v


def _affine(img, matrix, fill, resample):
    return img.transform(img.size, Image.Transform.AFFINE, matrix, resample, fillcolor=fill)


def _solarize_add(img, add, thresh=128):
    lut = [min(255, i + add) if i < thresh else i for i in range(256)]
    return img.point(lut * len(img.getbands()))


def _posterize(img, bits):
    return img if bits >= 8 else ImageOps.posterize(img, bits)


def _enhance(kind):
    return lambda img, f, **_: kind(img).enhance(f)


# name -> (op(img, arg, fill=, resample=), level(m, rng, img) -> arg or None)
def _ops(increasing: bool):
    def enh(m, rng, img):
        if increasing:  # 1 +- 0.9 m / 10, kept >= 0.1
            return max(0.1, 1.0 + _negate(m / 10 * 0.9, rng))
        return m / 10 * 1.8 + 0.1

    geometric = {
        "Rotate": (
            lambda img, a, fill, resample: img.rotate(a, resample=resample, fillcolor=fill),
            lambda m, rng, img: _negate(m / 10 * 30.0, rng),
        ),
        "ShearX": (
            lambda img, a, fill, resample: _affine(img, (1, a, 0, 0, 1, 0), fill, resample),
            lambda m, rng, img: _negate(m / 10 * 0.3, rng),
        ),
        "ShearY": (
            lambda img, a, fill, resample: _affine(img, (1, 0, 0, a, 1, 0), fill, resample),
            lambda m, rng, img: _negate(m / 10 * 0.3, rng),
        ),
        "TranslateXRel": (
            lambda img, a, fill, resample: _affine(img, (1, 0, a, 0, 1, 0), fill, resample),
            lambda m, rng, img: _negate(m / 10 * 0.45, rng) * img.width,
        ),
        "TranslateYRel": (
            lambda img, a, fill, resample: _affine(img, (1, 0, 0, 0, 1, a), fill, resample),
            lambda m, rng, img: _negate(m / 10 * 0.45, rng) * img.height,
        ),
    }
    if increasing:
        posterize = lambda m, rng, img: 4 - int(m / 10 * 4)
        solarize = lambda m, rng, img: 256 - min(256, int(m / 10 * 256))
    else:
        posterize = lambda m, rng, img: int(m / 10 * 4)
        solarize = lambda m, rng, img: min(256, int(m / 10 * 256))
    pixel = {
        "AutoContrast": (lambda img, a, **_: ImageOps.autocontrast(img), None),
        "Equalize": (lambda img, a, **_: ImageOps.equalize(img), None),
        "Invert": (lambda img, a, **_: ImageOps.invert(img), None),
        "Posterize": (lambda img, a, **_: _posterize(img, a), posterize),
        "Solarize": (lambda img, a, **_: ImageOps.solarize(img, a), solarize),
        "SolarizeAdd": (
            lambda img, a, **_: _solarize_add(img, a),
            lambda m, rng, img: min(128, int(m / 10 * 110)),
        ),
        "Color": (_enhance(ImageEnhance.Color), enh),
        "Contrast": (_enhance(ImageEnhance.Contrast), enh),
        "Brightness": (_enhance(ImageEnhance.Brightness), enh),
        "Sharpness": (_enhance(ImageEnhance.Sharpness), enh),
    }
    return {**pixel, **geometric}


RAND_OPS = [
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
]


class RandAugment:
    """timm-style RandAugment parsed from a config string such as 'rand-m9-mstd0.5'.

    Attributes: magnitude (m), num_layers (n), prob (p), magnitude_std (mstd; > 100 means
    uniform in [0, m]), magnitude_max (mmax), increasing (inc), fill (RGB uint8 fill of
    geometric ops, timm uses the dataset mean), interp (None: random bilinear/bicubic).
    """

    def __init__(self, config: str, fill=(124, 116, 104), interp: str | None = None):
        parts = config.split("-")
        if parts[0] != "rand":
            raise ValueError(f"RandAugment config {config!r} must start with 'rand-'")
        self.magnitude, self.num_layers, self.prob = 10.0, 2, 0.5
        self.magnitude_std, self.magnitude_max, self.increasing = 0.0, 10.0, False
        for part in parts[1:]:
            m = re.fullmatch(r"(mstd|mmax|inc|m|n|p)([\d.]+)", part)
            if m is None:
                raise ValueError(
                    f"RandAugment config {config!r}: unknown section {part!r} "
                    "(valid: m<int>, n<int>, p<float>, mstd<float>, mmax<int>, inc<0|1>)"
                )
            key, val = m.groups()
            if key == "m":
                self.magnitude = float(val)
            elif key == "n":
                self.num_layers = int(val)
            elif key == "p":
                self.prob = float(val)
            elif key == "mstd":
                self.magnitude_std = math.inf if float(val) > 100 else float(val)
            elif key == "mmax":
                self.magnitude_max = float(val)
            else:
                self.increasing = bool(int(val))
        self.fill = tuple(int(v) for v in fill)
        self.interp = interp
        self._ops = _ops(self.increasing)

    def __call__(self, img, rng: np.random.Generator):
        for name in rng.choice(RAND_OPS, self.num_layers, replace=True):
            if self.prob < 1.0 and rng.random() > self.prob:
                continue
            m = self.magnitude
            if self.magnitude_std == math.inf:
                m = rng.uniform(0, m)
            elif self.magnitude_std > 0:
                m = rng.normal(m, self.magnitude_std)
            m = max(0.0, min(m, self.magnitude_max))
            op, level = self._ops[name]
            arg = level(m, rng, img) if level is not None else None
            resample = interpolation(self.interp or "random", rng)
            img = op(img, arg, fill=self.fill, resample=resample)
        return img
