"""jaxbones: computer-vision backbones in JAX/Flax with PyTorch parity."""

# Importing the model files registers every variant and pretrained tag (each file registers
# its family); the converters register themselves the same way.
from jaxbones import convert, models
from jaxbones.registry import (
    create_model,
    get_pretrained_cfg,
    list_models,
    list_pretrained,
    model_info,
    register_model,
    register_pretrained,
)
from jaxbones.weights import load_pretrained

__all__ = [
    "convert",
    "create_model",
    "get_pretrained_cfg",
    "list_models",
    "list_pretrained",
    "load_pretrained",
    "model_info",
    "models",
    "register_model",
    "register_pretrained",
]
__version__ = "0.1.0"
