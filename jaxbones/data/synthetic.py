"""A synthetic JPEG tfds dataset (`synthetic_jpeg`) with ImageNet-like image sizes.

Used by `scripts/bench_input.py` and the tests of the encoded-image path: the images are
stored JPEG-encoded (bytes written as is, so no TensorFlow is needed) and tfds decodes them
with PIL on read, exactly like imagenet2012. Importing this module registers the builder;
its size is SyntheticJpeg.NUM_IMAGES ($BENCH_NUM_IMAGES, default 512), the images
SyntheticJpeg.SIZE (width, height; 500x375, ImageNet's most common size), alternately
landscape and portrait.
"""

import io
import os

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image


class SyntheticJpeg(tfds.core.GeneratorBasedBuilder):
    """JPEG-encoded synthetic images with ImageNet-like sizes (registered as synthetic_jpeg)."""

    VERSION = tfds.core.Version("1.0.0")
    code_path = None  # no checksums file (see jaxbones.data.datasets.Digits)
    NUM_IMAGES = int(os.environ.get("BENCH_NUM_IMAGES", "512"))
    SIZE = (500, 375)

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                    "label": tfds.features.ClassLabel(num_classes=1000),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        rng = np.random.default_rng(0)
        # smooth gradients plus noise: JPEG sizes close to natural photos (~100 KB)
        long, short = max(self.SIZE), min(self.SIZE)
        yy, xx = np.mgrid[0:long, 0:long]
        base = np.stack([(xx * (c + 1) + yy * (3 - c)) % 256 for c in range(3)], -1)
        noisy = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        for i in range(self.NUM_IMAGES):
            h, w = (short, long) if i % 2 else (long, short)
            img = np.roll(noisy, 7 * i, axis=(0, 1))[:h, :w]
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=90)
            # bytes are stored as is: tfds needs no TensorFlow to write encoded images
            yield i, {"image": buf.getvalue(), "label": i % 1000}
