"""What ``on_nonfinite="rollback"`` costs a run that never diverges: keeping the state before every call.

Usage::

    python -m benchmarks.rollback_cost --repeats 5

For each model and ``steps_per_loop``, a trainer with ``"stop"`` and one
with ``"rollback"`` (both in graph mode, Adam, batch 64, on the bundled
sample's 5,000 images) train one warm epoch each in turn, in one process,
``--repeats`` times. The table gives the median seconds per epoch of each
and their ratio: the cost of one host copy of every variable (weights,
Adam's two slots, counters) per compiled call.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from aeloops.data import load_sample, to_model_inputs  # noqa: E402
from aeloops.models import registry  # noqa: E402
from aeloops.training.trainer import Trainer  # noqa: E402
from benchmarks import machine  # noqa: E402


def epoch_seconds(trainer: Trainer, images, batch_size: int) -> float:
    """Trains one epoch and returns its seconds."""
    started = time.perf_counter()
    trainer.fit(images, epochs=1, batch_size=batch_size, verbose=0)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["dense", "conv"])
    parser.add_argument("--steps-per-loop", nargs="+", type=int, default=[1, 50])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    print(machine.describe())
    print("| model | steps_per_loop | variables | stop (s/epoch) | rollback (s/epoch) | rollback / stop |")
    print("|---|---|---|---|---|---|")
    train_images = load_sample().train_images
    for name in args.models:
        spec = registry.get(name)
        for steps_per_loop in args.steps_per_loop:
            trainers = {}
            for policy in ("stop", "rollback"):
                keras.utils.set_random_seed(0)
                model = spec.build()
                trainers[policy] = Trainer(
                    model, spec.objective(model), mode="graph", steps_per_loop=steps_per_loop, on_nonfinite=policy
                )
            images = to_model_inputs(train_images, trainers["stop"].model.example_shape)
            for trainer in trainers.values():  # Warm: traced and compiled before timing.
                epoch_seconds(trainer, images, args.batch_size)
            times = {policy: [] for policy in trainers}
            for _ in range(args.repeats):
                for policy, trainer in trainers.items():
                    times[policy].append(epoch_seconds(trainer, images, args.batch_size))
            stop, rollback = (statistics.median(times[policy]) for policy in ("stop", "rollback"))
            count = sum(int(v.shape.num_elements()) for v in trainers["rollback"].model.variables)
            ratios = statistics.median(r / s for r, s in zip(times["rollback"], times["stop"]))
            print(f"| {name} | {steps_per_loop} | {count:,} weights | {stop:.3f} | {rollback:.3f} | {ratios:.3f} |")


if __name__ == "__main__":
    main()
