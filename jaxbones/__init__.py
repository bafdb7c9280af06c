"""jaxbones: computer-vision backbones in JAX/Flax with PyTorch parity."""

from jaxbones import convert
from jaxbones.registry import create_model, list_models, model_info, register_model

__all__ = ["convert", "create_model", "list_models", "model_info", "register_model"]
__version__ = "0.1.0"
