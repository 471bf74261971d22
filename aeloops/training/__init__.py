"""Training: the Trainer and its compiled steps, the outer loop around them, and what the library records of each step.

The inner loop (``trainer``: ``compute_terms``, ``train_step``, ``test_step``)
is the researcher's; ``compiled`` turns it into eager, graph or XLA loops of
``steps_per_loop`` steps; ``updates`` and ``step_records`` are what the
library does around every step, whoever wrote it; ``outer_loop`` runs epochs,
validation and callbacks. Modules are imported by name; this file imports
nothing, so that reading ``options`` costs no TensorFlow.
"""
