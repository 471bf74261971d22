"""Autoencoder models: base classes, the seed's families and the registry."""

from aeloops.models import registry
from aeloops.models.base import Autoencoder, Decoder, Encoder
from aeloops.models.conv import ConvAutoencoder, ConvDecoder, ConvEncoder
from aeloops.models.dense import DenseAutoencoder, DenseDecoder, DenseEncoder
from aeloops.models.multihead import MultiHeadAutoencoder, MultiHeadDecoder, MultiHeadEncoder

__all__ = [
    "Autoencoder",
    "ConvAutoencoder",
    "ConvDecoder",
    "ConvEncoder",
    "Decoder",
    "DenseAutoencoder",
    "DenseDecoder",
    "DenseEncoder",
    "Encoder",
    "MultiHeadAutoencoder",
    "MultiHeadDecoder",
    "MultiHeadEncoder",
    "registry",
]
