"""The optimizers' moving averages of the weights (``use_ema``), swapped in and out of the model.

Keras keeps a moving average of each weight in its optimizer when asked
(``use_ema``); a model serves the averages, training goes on from the raw
weights. ``WeightAverages`` swaps the two exactly, as Keras's
``SwapEMAWeights`` does, and remembers which the model holds.

>>> averages = WeightAverages(trainer.optimizers.values())   # doctest: +SKIP
>>> with averages.holding(True):                              # doctest: +SKIP
...     model.save("served.keras")
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import keras

from aeloops.training import updates

__all__ = ["WeightAverages", "WeightAveragesMixin"]


class WeightAverages:
    """Swaps the moving averages of ``optimizers`` with the weights they average; does nothing without ``use_ema``."""

    def __init__(self, optimizers: Iterable[keras.optimizers.Optimizer]) -> None:
        self._optimizers = list(optimizers)
        self.in_use = False

    def use(self, averages: bool = True) -> None:
        """Puts the averages (True) or the raw weights (False) in the model's variables."""
        if bool(averages) == self.in_use:
            return
        pairs = updates.average_pairs(self._optimizers)
        if pairs:
            updates.swap(pairs)
            self.in_use = bool(averages)

    @contextlib.contextmanager
    def holding(self, averages: bool) -> Iterator[None]:
        """Puts the averages (or the raw weights) in for the block, then whichever the model held before."""
        previous = self.in_use
        self.use(averages)
        try:
            yield
        finally:
            self.use(previous)


class WeightAveragesMixin:
    """The ``Trainer``'s methods over its ``WeightAverages`` (``self._averages``)."""

    _averages: WeightAverages

    @property
    def averages_in_use(self) -> bool:
        """Whether the model's variables hold the optimizers' moving averages (``use_ema``) rather than raw weights."""
        return self._averages.in_use

    def use_averages(self, averages: bool = True) -> None:
        """Puts the optimizers' moving averages of the weights in the model's variables, or (False) the raw weights.

        ``fit`` leaves the averages in, as Keras's ``fit`` does, so the model,
        ``predict``, ``evaluate``, ``model.save`` and an export all serve the
        same weights; it puts the raw weights back before it trains again,
        and checkpoints always save the raw weights, so training resumes
        exactly. The swap is exact. Does nothing without ``use_ema``.
        """
        self._averages.use(averages)

    def averaged_weights(self) -> contextlib.AbstractContextManager[None]:
        """Puts the moving averages of the weights in for the block (``use_ema``), as Keras's ``SwapEMAWeights`` does.

        Evaluation, predictions, summaries' pictures and the saved model use
        the averages, training the raw weights. Leaving the block restores
        whichever the model held before.
        """
        return self._averages.holding(True)

    def raw_weights(self) -> contextlib.AbstractContextManager[None]:
        """Puts the raw training weights in for the block (what checkpoints save), whichever the model held before."""
        return self._averages.holding(False)
