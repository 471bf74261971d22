"""Autoencoder models: base classes, the seed's families and the registry."""

import os

import keras

from aeloops.models import registry
from aeloops.models.adversarial import AdversarialAutoencoder
from aeloops.models.base import Autoencoder, Decoder, Encoder
from aeloops.models.conv import ConvAutoencoder, ConvDecoder, ConvEncoder
from aeloops.models.conv_variational import (
    ConvVariationalAutoencoder,
    ConvVariationalDecoder,
    ConvVariationalEncoder,
)
from aeloops.models.dense import DenseAutoencoder, DenseDecoder, DenseEncoder, LinearCodeEncoder
from aeloops.models.importance import ImportanceWeightedAutoencoder
from aeloops.models.multihead import MultiHeadAutoencoder, MultiHeadDecoder, MultiHeadEncoder
from aeloops.models.noise import GaussianCorruption
from aeloops.models.quantized import QuantizingEncoder, VectorQuantizedAutoencoder, VectorQuantizer
from aeloops.models.sequence import SequenceAutoencoder, SequenceDecoder, SequenceEncoder
from aeloops.models.total_correlation import TotalCorrelationEncoder, TotalCorrelationVAE
from aeloops.models.transposed import StridedConvEncoder, TransposedConvAutoencoder, TransposedConvDecoder
from aeloops.models.variational import VariationalAutoencoder, VariationalEncoder
from aeloops.models.wasserstein import WassersteinAutoencoder, WassersteinEncoder

__all__ = [
    "AdversarialAutoencoder",
    "Autoencoder",
    "ConvAutoencoder",
    "ConvDecoder",
    "ConvEncoder",
    "ConvVariationalAutoencoder",
    "ConvVariationalDecoder",
    "ConvVariationalEncoder",
    "Decoder",
    "DenseAutoencoder",
    "DenseDecoder",
    "DenseEncoder",
    "Encoder",
    "GaussianCorruption",
    "LinearCodeEncoder",
    "ImportanceWeightedAutoencoder",
    "MultiHeadAutoencoder",
    "MultiHeadDecoder",
    "MultiHeadEncoder",
    "QuantizingEncoder",
    "SequenceAutoencoder",
    "SequenceDecoder",
    "SequenceEncoder",
    "StridedConvEncoder",
    "TotalCorrelationEncoder",
    "TotalCorrelationVAE",
    "TransposedConvAutoencoder",
    "TransposedConvDecoder",
    "VariationalAutoencoder",
    "VariationalEncoder",
    "VectorQuantizedAutoencoder",
    "VectorQuantizer",
    "WassersteinAutoencoder",
    "WassersteinEncoder",
    "load_model",
    "registry",
]


def load_model(path: str | os.PathLike) -> keras.Model:
    """Loads a ``.keras`` file saved by aeloops (importing this module registers its classes)."""
    return keras.saving.load_model(path)
