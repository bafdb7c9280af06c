"""Interactive predictors built on registered models (``SamPredictor``)."""

from jaxbones.predict.sam import ResizeLongestSide, SamPredictor

__all__ = ["ResizeLongestSide", "SamPredictor"]
