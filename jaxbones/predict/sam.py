"""``SamPredictor``: embed an image once, then predict masks for point / box / mask prompts
(segment_anything ``predictor.SamPredictor`` semantics, in JAX).

Pipeline (as the original): the uint8 image is resized so its long side is ``img_size``
(``ResizeLongestSide``: PIL bilinear, the same pixels torchvision's ``resize`` of a PIL image
gives), normalised with SAM's pixel mean/std, zero-padded bottom/right to a square and encoded
once (jitted). Prompts in original-image pixels are scaled to the resized frame; the decoder
(jitted per prompt structure) gives low-res logits that are upscaled to ``img_size``, cropped
to the resized image and resized to the original size, then thresholded at 0.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxbones.models.sam import Sam, postprocess_masks, preprocess


class ResizeLongestSide:
    """Resizes images / coordinates so the long side is ``target_length`` (segment_anything
    ``utils.transforms.ResizeLongestSide``)."""

    def __init__(self, target_length: int):
        self.target_length = target_length

    @staticmethod
    def get_preprocess_shape(oldh: int, oldw: int, long_side_length: int) -> tuple[int, int]:
        scale = long_side_length * 1.0 / max(oldh, oldw)
        return int(oldh * scale + 0.5), int(oldw * scale + 0.5)

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """HWC uint8 -> resized HWC uint8 (PIL bilinear, as torchvision on a PIL image)."""
        from PIL import Image

        h, w = self.get_preprocess_shape(image.shape[0], image.shape[1], self.target_length)
        return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))

    def apply_coords(self, coords: np.ndarray, original_size) -> np.ndarray:
        """[..., 2] (x, y) pixels of the original image -> the resized frame (float64)."""
        old_h, old_w = original_size
        new_h, new_w = self.get_preprocess_shape(old_h, old_w, self.target_length)
        coords = np.array(coords, dtype=float)
        coords[..., 0] = coords[..., 0] * (new_w / old_w)
        coords[..., 1] = coords[..., 1] * (new_h / old_h)
        return coords

    def apply_boxes(self, boxes: np.ndarray, original_size) -> np.ndarray:
        """[B, 4] xyxy boxes -> the resized frame."""
        return self.apply_coords(np.asarray(boxes).reshape(-1, 2, 2), original_size).reshape(-1, 4)


class SamPredictor:
    """Mask prediction for one image at a time with a ``Sam`` model and its variables.

    ``set_image(image_uint8_hwc)`` then ``predict(point_coords, point_labels, box,
    mask_input, multimask_output=True, return_logits=False)`` -> (masks [C, H, W] bool at the
    original size (float logits with ``return_logits``), iou_predictions [C], low-res logits
    [C, img/4, img/4] that can be fed back as ``mask_input`` (as [1, img/4, img/4])). Inputs
    and outputs use the original predictor's numpy layouts. ``compiler_options`` are passed
    to ``jax.jit`` for the encoder and decoder programs.
    """

    def __init__(self, model: Sam, variables, compiler_options: dict | None = None):
        if not isinstance(model, Sam):
            raise TypeError(f"SamPredictor needs a Sam model (sam_vit_b/l/h), got {type(model)}")
        self.model = model
        self.variables = variables
        self.transform = ResizeLongestSide(model.img_size)
        jit = functools.partial(jax.jit, compiler_options=compiler_options)
        self._encode = jit(lambda v, x: model.apply(v, x, method=Sam.encode_image))
        # one compilation per prompt structure (which prompts, point count, output options)
        self._predict = jit(
            self._predict_impl,
            static_argnames=("multimask_output", "input_size", "original_size", "return_logits"),
        )
        self.reset_image()

    def reset_image(self) -> None:
        self.features = None
        self.original_size = None
        self.input_size = None

    @property
    def is_image_set(self) -> bool:
        return self.features is not None

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Embeds an HWC uint8 ``image`` (RGB or BGR)."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"set_image expects an HxWx3 uint8 image, got {image.shape} {image.dtype}"
            )
        if image_format == "BGR":
            image = image[..., ::-1]
        resized = self.transform.apply_image(np.ascontiguousarray(image))
        x = preprocess(
            resized[None].astype(np.float32),
            self.model.img_size,
            self.model.pixel_mean,
            self.model.pixel_std,
        )
        self.features = self._encode(self.variables, x)  # [1, h, w, C]
        self.original_size = tuple(image.shape[:2])
        self.input_size = tuple(resized.shape[:2])

    def get_image_embedding(self):
        """[1, h, w, C] embedding of the current image."""
        if not self.is_image_set:
            raise RuntimeError("set an image with .set_image(...) first")
        return self.features

    def _predict_impl(
        self,
        variables,
        features,
        coords,
        labels,
        boxes,
        masks,
        *,
        multimask_output,
        input_size,
        original_size,
        return_logits,
    ):
        model = self.model
        sparse, dense = model.apply(
            variables, coords, labels, boxes, masks, method=Sam.encode_prompts
        )
        low_res, iou = model.apply(
            variables, features, sparse, dense, multimask_output, method=Sam.decode_masks
        )
        out = postprocess_masks(low_res, model.img_size, input_size, original_size)
        if not return_logits:
            out = out > 0.0  # Sam.mask_threshold
        return out, iou, low_res

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ):
        """Masks for prompts in original-image pixels: ``point_coords`` [N, 2] (x, y),
        ``point_labels`` [N] (1 foreground, 0 background), ``box`` [4] xyxy, ``mask_input``
        [1, img/4, img/4] low-res logits of a previous prediction."""
        if not self.is_image_set:
            raise RuntimeError("set an image with .set_image(...) before predicting masks")
        coords = labels = boxes = masks = None
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must be given with point_coords")
            coords = self.transform.apply_coords(point_coords, self.original_size)
            coords = jnp.asarray(coords, jnp.float32)[None]  # [1, N, 2]
            labels = jnp.asarray(point_labels, jnp.int32)[None]  # [1, N]
        if box is not None:
            boxes = jnp.asarray(self.transform.apply_boxes(box, self.original_size), jnp.float32)
        if mask_input is not None:
            masks = jnp.asarray(mask_input, jnp.float32)[None, ..., None][:, 0]  # [1, h, w, 1]
        out, iou, low_res = self._predict(
            self.variables,
            self.features,
            coords,
            labels,
            boxes,
            masks,
            multimask_output=multimask_output,
            input_size=self.input_size,
            original_size=self.original_size,
            return_logits=return_logits,
        )
        # NHWC [1, H, W, C] -> the original predictor's [C, H, W]
        return (
            np.asarray(out[0]).transpose(2, 0, 1),
            np.asarray(iou[0]),
            np.asarray(low_res[0]).transpose(2, 0, 1),
        )
