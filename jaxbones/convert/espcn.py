"""ESPCN: Flax ``conv1..conv3`` are the PyTorch module's ``conv1..conv3`` (Conv2d with bias);
the shared conv leaf rule does the transposes, so no renaming rules are needed."""

from __future__ import annotations

from jaxbones.convert.core import Converter, register_converter

register_converter("espcn", Converter(rules=[]))
