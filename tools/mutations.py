"""Deliberate one-line bugs, each applied to a copy of the repository and run against the tests of its concept.

A mutation that no test catches (a survivor) is a behaviour the suite does
not guard. Run before an issue is closed, and add a line here for every
feature built::

    python tools/mutations.py              # every mutation; exit 1 if any survives
    python tools/mutations.py shuffle      # those whose name contains "shuffle"

Each entry: a name, the file, the exact text to replace (it must occur once),
its replacement, and the pytest arguments of the tests that should catch it.
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = (
    Mutation(
        "a loop's step inlined, traced twice", "aeloops/training/compiled.py",
        "        step = _compile(step, jit_compile=",
        "        step = step if True else _compile(step, jit_compile=",
        ("tests/test_train_step.py", "-k", "overridden_train_step_is_what"),
    ),
    Mutation(
        "a traced step's custom gradients kept for good", "aeloops/training/custom_gradients.py",
        "                del registry[name]", "                pass",
        ("tests/test_train_step.py", "tests/test_benchmarks.py", "-k", "let_go"),
    ),
    Mutation(
        "an eager run's TensorBoard graph keeps its step", "aeloops/tensorboard/summaries.py",
        "    @releasing_custom_gradients\n", "",
        ("tests/test_train_step.py", "-k", "let_go"),
    ),
    Mutation(
        "predict traced once per shape", "aeloops/training/inference.py",
        "    if hasattr(forward, \"get_concrete_function\"):", "    if False:",
        ("tests/test_loop.py", "-k", "predict_runs_many_batches"),
    ),
    Mutation(
        "a histogram drops a value", "aeloops/tensorboard/histograms.py",
        "histogram_pb(name, np.asarray(values), buckets=buckets)",
        "histogram_pb(name, np.asarray(values).ravel()[1:], buckets=buckets)",
        ("tests/test_summaries.py", "-k", "hparams_compare"),
    ),
    Mutation(
        "sample_fid takes every model for one with a posterior", "benchmarks/sample_fid.py",
        "    return decodes_codebook_entries(model), has_gaussian_posterior(model)",
        "    return decodes_codebook_entries(model), True",
        ("tests/test_benchmarks.py", "-k", "asks_each_run"),
    ),
    Mutation(
        "a call that traced its loop cuts the next call", "aeloops/training/outer_loop.py",
        "        if trainer.trace_counts == traced:", "        if True:",
        ("tests/test_loop.py", "-k", "slow_steps"),
    ),
    Mutation(
        "a collapsed code never said", "aeloops/runs/outputs.py",
        "    if not kl or not kl[-1] < COLLAPSED_KL:", "    if not kl or kl[-1] >= 0:",
        ("tests/test_vae_family.py", "-k", "collapsed"),
    ),
    Mutation(
        "a gated layer's gate forgotten", "aeloops/models/dense.py",
        "        return self.linear(inputs) * self.gate(inputs)", "        return self.linear(inputs)",
        ("tests/test_vampprior.py", "-k", "gated"),
    ),
    Mutation(
        "the VampPrior reproduction validated at the warm-up's weight", "benchmarks/vae_nll.py",
        "            warm = tf.constant(warmup_steps, tf.int64)", "            warm = self.step",
        ("tests/test_benchmarks.py", "-k", "vampprior_reproduction"),
    ),
    Mutation(
        "sample_fid trains on the data without its held-out folder", "benchmarks/sample_fid.py",
        '    data += ["--validation-data", args.validation_data] if args.validation_data else []', "",
        ("tests/test_benchmarks.py", "-k", "sample_fid"),
    ),
    Mutation(
        "a FactorVAE vote holds no factor fixed", "aeloops/evaluation/disentanglement.py",
        "            factors[rows, :, fixed] = factors[rows, :1, fixed]", "            pass",
        ("tests/test_disentanglement.py", "-k", "factor_vae"),
    ),
    Mutation(
        "the VampPrior's density forgets the components' count", "aeloops/models/vampprior.py",
        "        log_density = tf.reduce_logsumexp(per_component, axis=-1) - math.log(self.components)\n",
        "        log_density = tf.reduce_logsumexp(per_component, axis=-1)\n",
        ("tests/test_vampprior.py",),
    ),
    Mutation(
        "prior draws ignore the model's own prior", "aeloops/evaluation/samplers.py",
        "        drawn = model.sample_codes(count, seed)",
        "        drawn = np.random.default_rng(seed).standard_normal((count, latent_dim)).astype(np.float32)",
        ("tests/test_vampprior.py", "-k", "draws"),
    ),
    Mutation(
        "InceptionV3 reads pixels in [0, 1], not [-1, 1]", "aeloops/evaluation/sample_quality.py",
        "network(batch * 2.0 - 1.0, training=False)", "network(batch, training=False)",
        ("tests/test_sample_quality.py", "-k", "inception"),
    ),
    Mutation(
        "the prior's first layer sees the index it predicts", "aeloops/models/pixelcnn.py",
        'self.first = MaskedConv2D(self.filters, 7, "A", name="masked_a")',
        'self.first = MaskedConv2D(self.filters, 7, "B", name="masked_a")',
        ("tests/test_prior.py", "-k", "see_only"),
    ),
    Mutation(
        "a resumed prior starts again", "aeloops/prior.py",
        "        if resume:\n            checkpointer.restore()\n", "        if resume:\n            pass\n",
        ("tests/test_prior.py", "-k", "resumes"),
    ),
    Mutation(
        "the sample watch draws the same codes every epoch", "aeloops/runs/sample_watch.py",
        "seed=config.seed + epoch)", "seed=config.seed)",
        ("tests/test_summaries.py", "-k", "fid_every"),
    ),
    Mutation(
        "the default extractor is trained again for every run", "aeloops/evaluation/classifier.py",
        "    if path.is_file() and record.is_file():\n", "    if False:\n",
        ("tests/test_sample_quality.py", "-k", "default_extractor"),
    ),
    Mutation(
        "MIG is the gap, not the gap over the factor's entropy", "aeloops/evaluation/disentanglement.py",
        "    return float(np.mean(_top_two_gap(information)[kept] / entropies[kept]))\n",
        "    return float(np.mean(_top_two_gap(information)[kept]))\n",
        ("tests/test_disentanglement.py", "-k", "mig"),
    ),
    Mutation(
        "DCI's completeness reads each dimension, not each factor", "aeloops/evaluation/disentanglement.py",
        "    return float(np.mean(1.0 - _entropies(importance.T, base=importance.shape[0])))\n",
        "    return float(np.mean(1.0 - _entropies(importance, base=importance.shape[1])))\n",
        ("tests/test_disentanglement.py", "-k", "dci"),
    ),
    Mutation(
        "the shapes ignore their orientation", "aeloops/data/factors.py",
        "    angle = orientation * np.float32(2 * np.pi / 40)\n", "    angle = orientation * 0\n",
        ("tests/test_disentanglement.py", "-k", "pure_function"),
    ),
    Mutation(
        "compiled loops are kept whatever the mode", "aeloops/training/functions.py",
        "        key = (method, kind, self.mode)\n", "        key = (method, kind, \"any\")\n",
        ("tests/test_train_step.py", "-k", "auto"),
    ),
    Mutation(
        "a resumed epoch forgets its first steps' sums", "aeloops/training/loop_state.py",
        "        self.epoch_progress = None if progress is None else EpochProgress.from_json(progress)\n",
        "        self.epoch_progress = None\n",
        ("tests/test_checkpoints.py",),
    ),
    Mutation(
        "gradients come back in the parts' order, not the caller's", "aeloops/training/trainer.py",
        "        return gradient_updates.reordered(values, [v for _, part in parts for v in part], variables)\n",
        "        return list(values)\n",
        ("tests/test_train_step.py", "-k", "gradients_then_apply_gradients"),
    ),
    Mutation(
        "FID without the cross term", "aeloops/evaluation/sample_quality.py",
        " - 2.0 * np.trace(root))", ")",
        ("tests/test_sample_quality.py",),
    ),
    Mutation(
        "KID's kernel sums keep their diagonal (biased)", "aeloops/evaluation/sample_quality.py",
        "    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (count * (count - 1))\n",
        "    within = (k_xx.sum() + k_yy.sum()) / (count * (count - 1))\n",
        ("tests/test_sample_quality.py",),
    ),
    Mutation(
        "precision's balls reach the nearest neighbour, not the k-th", "aeloops/evaluation/sample_quality.py",
        "    radii = np.sort(support_distances, axis=1)[:, k]\n",
        "    radii = np.sort(support_distances, axis=1)[:, 1]\n",
        ("tests/test_sample_quality.py",),
    ),
    Mutation(
        "the gmm sampler draws from N(0, I), not the fitted mixture", "aeloops/evaluation/samplers.py",
        "        flat, _ = mixture.sample(count)\n",
        "        flat = np.random.default_rng(seed).standard_normal((count, codes[0].size))\n",
        ("tests/test_samplers.py",),
    ),
    Mutation(
        "a recovery line always opens with a newline", "aeloops/training/progress.py",
        "        sys.stdout.write((\"\\n\" if self._bar_open else \"\") + line + \"\\n\")\n",
        "        sys.stdout.write(\"\\n\" + line + \"\\n\")\n",
        ("tests/test_recovery.py", "-k", "progress_bar"),
    ),
    Mutation(
        "a model family imports its trainer by a string", "aeloops/models/registry.py",
        "    AdversarialAutoencoder, flat,\n    takes=",
        "    AdversarialAutoencoder, flat,\n"
        "    trainer=lambda: importlib.import_module(\"aeloops.training.adversarial\").AdversarialTrainer,\n    takes=",
        ("tests/test_imports.py",),
    ),
    Mutation(
        "a VQ-VAE never re-seeds its unused entries", "aeloops/models/quantized.py",
        "            self._reseed(flat, usage > 0)\n", "            pass\n",
        ("tests/test_vae_family.py", "-k", "reseeds_entries"),
    ),
    Mutation(
        "the log-variance bound is not applied", "aeloops/models/variational.py",
        "        log_variance = log_variance_bound * tf.tanh(log_variance / log_variance_bound)\n",
        "        pass\n",
        ("tests/test_vae_family.py", "-k", "log_variance_bound_keeps"),
    ),
    Mutation(
        "images too large for memory are decoded anyway", "aeloops/data/images.py",
        "    needed = files.count * math.prod(files.shape) * np.dtype(np.float32).itemsize\n",
        "    needed = 0\n",
        ("tests/test_hostile.py", "-k", "not_fit_in_memory"),
    ),
    Mutation(
        "a link to a folder inside an image folder is skipped", "aeloops/data/image_files.py",
        "os.walk(root, followlinks=True)", "os.walk(root)",
        ("tests/test_hostile.py", "-k", "link_to_a_folder"),
    ),
    Mutation(
        "a checkpoint cut after ten bytes is a traceback", "aeloops/runs/checkpoint_files.py",
        "    except (tf.errors.OpError, OSError, IndexError) as error:\n",
        "    except (tf.errors.OpError, OSError) as error:\n",
        ("tests/test_reliability.py", "-k", "damaged"),
    ),
    Mutation(
        "a killed write's temporary file stays forever", "aeloops/files.py",
        "    remove_leftovers(path, suffix)\n    descriptor, name", "    descriptor, name",
        ("tests/test_resume_safety.py", "-k", "leftovers"),
    ),
    Mutation(
        "a reused cache is not checked against its checksum", "aeloops/data/decoded.py",
        "    if description.get(\"sha256\") != file_digest(array_path):\n",
        "    if False:\n",
        ("tests/test_own_data.py", "-k", "bytes_changed"),
    ),
    Mutation(
        "a rollback leaves the bad call's state in place", "aeloops/training/recovery.py",
        "        self.roll_back(count)\n        self.state.recoveries.assign_add(1)\n",
        "        self.state.recoveries.assign_add(1)\n",
        ("tests/test_recovery.py", "-k", "spike_rolls_back"),
    ),
    Mutation(
        "the spike rule never fills its window", "aeloops/training/recovery.py",
        "        self.state.accepted.assign_add(1)\n", "",
        ("tests/test_recovery.py", "-k", "spike_rolls_back"),
    ),
    Mutation(
        "a rollback's skipped steps do not advance the step counter", "aeloops/training/recovery.py",
        "        self.trainer.step.assign_add(skipped)\n", "",
        ("tests/test_recovery.py", "-k", "killed_and_resumed or finishes_with_rollback"),
    ),
    Mutation(
        "a rolled-back call's steps count in the epoch's means", "aeloops/training/outer_loop.py",
        "    skipped = sums.get(NONFINITE_STEPS, 0.0) + sums.get(ROLLED_BACK_STEPS, 0.0)\n",
        "    skipped = sums.get(NONFINITE_STEPS, 0.0)\n",
        ("tests/test_recovery.py", "-k", "spike_rolls_back"),
    ),
    Mutation(
        "a received run's config.json chooses where the cache is written", "aeloops/train.py",
        "    typed_cache = \"cache\" in given or \"cache\" in _set_values(args.set, saved)\n",
        "    typed_cache = True\n",
        ("tests/test_own_data.py", "-k", "streamed_folder_trains"),
    ),
    Mutation(
        "a slow epoch on a pipe stays silent until its end", "aeloops/training/progress.py",
        "finalize = True  # Keras's one-line format", "finalize = None  # Keras's one-line format",
        ("tests/test_loop.py", "-k", "slow_epoch_on_a_pipe"),
    ),
    Mutation(
        "the pictures show the first examples, not a sample across the classes", "aeloops/runs/assemble.py",
        "    chosen = spread_sample(labels, len(fixed), 1000, config.seed)\n",
        "    chosen = np.arange(min(len(fixed), 1000))\n",
        ("tests/test_own_data.py", "-k", "sorted_order"),
    ),
    Mutation(
        "the Projector labelled with numbers, not class names", "aeloops/runs/assemble.py",
        "    labels = None if labels is None else datasets.label_names(labels[chosen])\n",
        "    labels = None if labels is None else labels[chosen]\n",
        ("tests/test_own_data.py", "-k", "sorted_order"),
    ),
    Mutation(
        "a strategy's global batches shuffled apart from one device's order", "aeloops/data/sources.py",
        "        rows = epoch_batches(self.count, self.batch_size, self.seed, epoch, shuffle)[done:]",
        "        rows = epoch_batches(self.count, self.batch_size, self.seed + 1, epoch, shuffle)[done:]",
        ("tests/test_distribution.py", "-k", "mirrored_matches"),
    ),
    Mutation(
        "a finished fit returns only the rows it ran", "aeloops/training/outer_loop.py",
        "    finishing = initial_epoch is None and trainer.loop_state.run_first_epoch is not None\n",
        "    finishing = False\n",
        ("tests/test_python_resume.py", "-k", "restored_run_finishes"),
    ),
    Mutation(
        "checkpoints forget the fit's rows", "aeloops/training/loop_state.py",
        "            \"fit_history\": self.history,\n", "",
        ("tests/test_python_resume.py", "-k", "restored_run_finishes"),
    ),
    Mutation(
        "the non-finite message reads the last step, not the first", "aeloops/training/trainer.py",
        "self._cache.first_nonfinite.note(newly, results, updates)",
        "self._cache.first_nonfinite.note(tf.logical_not(finite), results, updates)",
        ("tests/test_readme.py", "-k", "naive"),
    ),
    Mutation(
        "the non-finite message never names a term", "aeloops/training/step_records.py",
        "        if not terms:\n            return \"the gradient\"\n", "        return \"the gradient\"\n",
        ("tests/test_loop.py", "-k", "nonfinite_loss_stops"),
    ),
    Mutation(
        "sweep workers' samplers all seeded alike", "aeloops/sweeps/study.py",
        "make_sampler(spec, spec.seed * 1_000_003 + count)", "make_sampler(spec, spec.seed)",
        ("tests/test_sweep.py", "-k", "two_workers"),
    ),
    Mutation(
        "a sweep's stopped trial never resumed", "aeloops/sweeps/study.py",
        "            if stack.enter_context(_locked(claims / f\"{frozen.number}.lock\", blocking=False)):",
        "            if False:",
        ("tests/test_sweep.py", "-k", "killed"),
    ),
    Mutation(
        "a sweep trial's run started again instead of resumed", "aeloops/sweeps/study.py",
        "            if (run_dir / \"config.json\").is_file():", "            if False:",
        ("tests/test_sweep.py", "-k", "killed"),
    ),
    Mutation(
        "the sweep's pruner never asked", "aeloops/sweeps/study.py",
        "        if self.trial.should_prune():", "        if False:",
        ("tests/test_sweep.py", "-k", "pruning"),
    ),
    Mutation(
        "LiteRT keeps the unfrozen variables (every output NaN)", "aeloops/evaluation/litert.py",
        "    frozen = convert_variables_to_constants_v2(concrete)\n", "    frozen = concrete\n",
        ("tests/test_litert.py", "-k", "every_registered"),
    ),
    Mutation(
        "a LiteRT file never falls back to one example a call", "aeloops/evaluation/litert.py",
        "tries = [batch_size] if batch_size is not None else [None, 1]", "tries = [batch_size]",
        ("tests/test_litert.py", "-k", "every_registered"),
    ),
    Mutation(
        "float16 quantization asked for, float32 written", "aeloops/evaluation/litert.py",
        "            converter.target_spec.supported_types = [tf.float16]\n", "            pass\n",
        ("tests/test_litert.py", "-k", "quantized"),
    ),
    Mutation(
        "ONNX's Log1p written as Log", "aeloops/evaluation/onnx_files.py",
        "    ctx.replace_inputs(node, [added.output[0]])\n", "",
        ("tests/test_onnx_files.py", "-k", "dense"),
    ),
    Mutation(
        "a resumed run logs to a new MLflow run", "aeloops/runs/tracking.py",
        "        self.run_id = self._earlier_run()\n", "        self.run_id = None\n",
        ("tests/test_tracking.py",),
    ),
    Mutation(
        "MLflow metrics one epoch off", "aeloops/runs/tracking.py",
        "float(value), 0, int(epoch))", "float(value), 0, int(epoch) - 1)",
        ("tests/test_tracking.py",),
    ),
    Mutation(
        "the models register while a module of the package is half-imported", "aeloops/__init__.py",
        'if (name in ("keras", "tensorflow") or name.startswith("aeloops."))', 'if name in ("keras", "tensorflow")',
        ("tests/test_cli_experience.py", "-k", "fresh_process"),
    ),
    Mutation(
        "a checkpoint list may name a checkpoint elsewhere", "aeloops/runs/checkpoint_files.py",
        "if os.path.dirname(path) != home or not", "if not",
        ("tests/test_trust.py", "-k", "outside_the_run"),
    ),
    Mutation(
        "the best checkpoint's list goes unread", "aeloops/runs/checkpoints.py",
        "        for checked in dict.fromkeys((self.read_directory, self.directory)):\n",
        "        for checked in dict.fromkeys((self.read_directory, self.directory)) if False else ():\n",
        ("tests/test_trust.py", "-k", "outside_the_run"),
    ),
    Mutation(
        "Keras batch hooks get the call's means, not the epoch's", "aeloops/training/keras_callbacks.py",
        "callback.on_train_batch_end(batch, dict(epoch_means))", "callback.on_train_batch_end(batch, dict(call_means))",
        ("tests/test_keras_callbacks.py", "-k", "batch_hooks"),
    ),
    Mutation(
        "Keras callbacks' on_epoch_begin never called", "aeloops/training/keras_callbacks.py",
        "            callback.on_epoch_begin(epoch, {})\n", "            pass\n",
        ("tests/test_keras_callbacks.py", "-k", "learning_rate_set or batch_hooks"),
    ),
    Mutation(
        "a Keras callback's stop_training is not the trainer's", "aeloops/training/keras_callbacks.py",
        "        self._trainer.stop_training = bool(value)\n", "        pass\n",
        ("tests/test_keras_callbacks.py", "-k", "early_stopping or terminate_on_nan"),
    ),
    Mutation(
        "validation hooks called with val_ names", "aeloops/training/keras_callbacks.py",
        "            callback.on_test_end(dict(logs))",
        "            callback.on_test_end({f'val_{k}': v for k, v in logs.items()})",
        ("tests/test_keras_callbacks.py", "-k", "batch_hooks"),
    ),
    Mutation(
        "aeloops callbacks run before Keras's", "aeloops/training/keras_callbacks.py",
        "            callback.on_epoch_end(epoch, dict(logs))\n        self._own(\"on_epoch_end\", epoch, logs)\n",
        "            pass\n        self._own(\"on_epoch_end\", epoch, logs)\n"
        "        for callback in self.keras:\n            callback.on_epoch_end(epoch, dict(logs))\n",
        ("tests/test_keras_callbacks.py", "-k", "side_by_side or saved_in_the_checkpoint"),
    ),
    Mutation(
        "export --best exports the newest checkpoint", "aeloops/runs/commands.py",
        "    source = checked_source(run_dir, best, action)\n    config = ",
        "    checked_source(run_dir, best, action)\n    source = run_dir.checkpoints\n    config = ",
        ("tests/test_export.py", "-k", "best_checkpoint"),
    ),
    Mutation(
        "dynamic binarization draws the same pixels at every step", "aeloops/data/sources.py",
        "step * 1024 + tf.cast(replica, tf.int64)", "tf.cast(replica, tf.int64)",
        ("tests/test_sources.py",),
    ),
    Mutation(
        "evaluate --data skips the run's binarization", "aeloops/evaluate.py",
        "images = run_data.binarize_validation(data_lib.to_model_inputs(_load(data), example_shape, data), config)",
        "images = data_lib.to_model_inputs(_load(data), example_shape, data)",
        ("tests/test_evaluate.py", "-k", "binarized_as"),
    ),
    Mutation(
        "TensorBoard's learning_rate written as a constant", "aeloops/tensorboard/summaries.py",
        "{**logs, **trainer.learning_rates()}", "{**logs, **{name: 7.0 for name in trainer.learning_rates()}}",
        ("tests/test_summaries.py", "-k", "every_term and dense"),
    ),
    Mutation(
        "loss-scale skips never counted", "aeloops/training/updates.py",
        "loss_scale_skipped = tf.cast(tf.logical_not(tf.math.is_finite(norm)), tf.float32)",
        "loss_scale_skipped = tf.zeros([], tf.float32)",
        ("tests/test_loop.py", "-k", "loss_scale"),
    ),
    Mutation(
        "every epoch shuffled in the same order", "aeloops/data/sources.py",
        "np.random.default_rng([seed, epoch])", "np.random.default_rng([seed])",
        ("tests/test_sources.py",),
    ),
    Mutation(
        "model options ignored", "aeloops/models/registry.py",
        "model_class(inputs(shape), **{**chosen, **given})", "model_class(inputs(shape), **chosen)",
        ("tests/test_models.py", "-k", "options"),
    ),
    Mutation(
        "bits per dimension without the bins' D log 256", "aeloops/evaluation/likelihood.py",
        "nll, elbo = nll + dimensions * math.log(bins), elbo + dimensions * math.log(bins)", "nll, elbo = nll, elbo",
        ("tests/test_likelihood.py", "-k", "8_bit"),
    ),
    Mutation(
        "workers read every shard", "aeloops/data/stream.py",
        "mine = shards[pipeline::pipelines]", "mine = shards",
        ("tests/test_own_data.py", "-k", "each_worker"),
    ),
    Mutation(
        "a worker with fewer images ends its epoch early", "aeloops/data/stream.py",
        "            dataset = dataset.repeat()\n", "",
        ("tests/test_own_data.py", "-k", "each_worker"),
    ),
    Mutation(
        "a resumed epoch forgets the sums of its steps before the stop", "aeloops/training/outer_loop.py",
        "sums: dict[str, float] = dict(carried.sums) if carried is not None else {}", "sums: dict[str, float] = {}",
        ("tests/test_reliability.py", "-k", "again_and_again and graph"),
    ),
    Mutation(
        "a profile window inside one compiled call profiles nothing", "aeloops/tensorboard/summaries.py",
        "step < last and step + steps_per_loop > first", "first <= step < last",
        ("tests/test_flags.py", "-k", "profile"),
    ),
    Mutation(
        "--seed ignored", "aeloops/runs/prepare.py",
        "    keras.utils.set_random_seed(config.seed)\n", "    keras.utils.set_random_seed(0)\n",
        ("tests/test_flags.py", "-k", "seed"),
    ),
    Mutation(
        "streams still being read when a program ends hang it", "aeloops/data/npy_rows.py",
        "atexit.register(_READS.drain)\n", "",
        ("tests/test_streaming.py", "-k", "ends_with"),
    ),
    Mutation(
        "cached uint8 rows scaled by 1/256", "aeloops/data/stream.py",
        "tf.cast(rows, tf.float32) / 255.0", "tf.cast(rows, tf.float32) / 256.0",
        ("tests/test_own_data.py", "-k", "cache_of_decoded"),
    ),
    Mutation(
        "a cached stream does not skip the steps already run", "aeloops/data/stream.py",
        "dataset = dataset.batch(batch_size, drop_remainder=True).take(batches).skip(skipped)",
        "dataset = dataset.batch(batch_size, drop_remainder=True).take(batches)",
        ("tests/test_own_data.py", "-k", "cache_of_decoded"),
    ),
    Mutation(
        "a cache outlives a change to its files", "aeloops/data/decoded.py",
        "\\0{status.st_size}\\0{status.st_mtime_ns}", "",
        ("tests/test_own_data.py", "-k", "keyed_by_the_files"),
    ),
    Mutation(
        "beta-TC-VAE's dataset_size not set from the data", "aeloops/runs/prepare.py",
        "    model.dataset_size = count\n", "",
        ("tests/test_own_data.py", "-k", "every_registered and betatcvae-32"),
    ),
    Mutation(
        "export serves the model's shape, not the images'", "aeloops/export.py",
        "path = export(trainer.model, out, trainer.objective, step=step, image_shape=config.image_shape)",
        "path = export(trainer.model, out, trainer.objective, step=step, image_shape=None)",
        ("tests/test_own_data.py", "-k", "every_registered and dense-32"),
    ),
    Mutation(
        "applied gradients not scaled back under mixed_float16", "aeloops/training/updates.py",
        "        if scale is not None or replicas > 1:\n", "        if replicas > 1:\n",
        ("tests/test_readme.py", "-k", "pcgrad"),
    ),
    Mutation(
        "gradient values are one replica's, not the global batch's", "aeloops/training/updates.py",
        "summed = all_reduce(raw) if replicas > 1 else list(raw)", "summed = list(raw)",
        ("tests/test_distribution.py", "-k", "override"),
    ),
    Mutation(
        "a second fit starts the epoch count again", "aeloops/training/outer_loop.py",
        "    first = trainer.loop_state.completed_epochs\n", "    first = 0\n",
        ("tests/test_python_resume.py", "-k", "second_fit"),
    ),
    Mutation(
        "a restored run forgets where its fit began", "aeloops/training/loop_state.py",
        'self.run_first_epoch = record.get("run_first_epoch")', "self.run_first_epoch = None",
        ("tests/test_python_resume.py", "-k", "restored_run"),
    ),
    Mutation(
        "fit leaves the raw weights in the model after EMA", "aeloops/training/outer_loop.py",
        "    trainer.use_averages(True)  # As Keras", "    trainer.use_averages(False)  # As Keras",
        ("tests/test_python_resume.py", "-k", "moving_averages"),
    ),
    Mutation(
        "checkpoints save the averages when fit left them in", "aeloops/runs/checkpoints.py",
        "            with trainer.raw_weights():  # What training",
        "            with trainer.averaged_weights():  # What training",
        ("tests/test_python_resume.py", "-k", "moving_averages"),
    ),
    Mutation(
        "a vector's components logged out of order", "aeloops/training/checks.py",
        'checked[f"{name}/{index:0{width}d}"] = value[index]',
        'checked[f"{name}/{index:0{width}d}"] = value[-1 - index]',
        ("tests/test_train_step.py", "-k", "vector"),
    ),
    Mutation(
        "gradient cosines divided by one norm only", "aeloops/tensorboard/term_norms.py",
        "tf.math.divide_no_nan(dot, norms[name] * norms[other])", "tf.math.divide_no_nan(dot, norms[name])",
        ("tests/test_summaries.py", "-k", "cosines"),
    ),
    Mutation(
        "the AAE's discriminator calls the codes real", "aeloops/training/adversarial.py",
        "_cross_entropy(tf.zeros_like(fake), fake)", "_cross_entropy(tf.ones_like(fake), fake)",
        ("tests/test_vae_family.py", "-k", "both_adversaries"),
    ),
    Mutation(
        "the AAE skips its reconstruction update", "aeloops/training/adversarial.py",
        '        self.optimize(terms["loss"], tape)\n', "",
        ("tests/test_vae_family.py", "-k", "both_adversaries"),
    ),
    Mutation(
        "HParams shows auto rather than the mode that ran", "aeloops/tensorboard/summaries.py",
        '        resolved["mode"] = trainer.mode\n', "        pass\n",
        ("tests/test_summaries.py", "-k", "hparams_compare"),
    ),
    Mutation(
        "one line an epoch without its epoch", "aeloops/training/progress.py",
        'sys.stdout.write(f"{self.label} - {line.getvalue()}")', "sys.stdout.write(line.getvalue())",
        ("tests/test_loop.py", "-k", "one_line"),
    ),
    Mutation(
        "the config text shows the rate requested, not the rate used", "aeloops/tensorboard/summaries.py",
        '        resolved["learning_rate"] = rates["learning_rate"]\n', "        pass\n",
        ("tests/test_summaries.py", "-k", "hparams_compare"),
    ),
    Mutation(
        "the Projector's codes above train/ and validation/", "aeloops/tensorboard/summaries.py",
        "directory = pathlib.Path(self.train_dir)", "directory = pathlib.Path(self.logdir)",
        ("tests/test_summaries.py", "-k", "hparams_compare"),
    ),
    Mutation(
        "the HParams row in a third run above train/ and validation/", "aeloops/tensorboard/summaries.py",
        "            with self.train_writer.as_default():\n                values = _as_run(",
        "            with tf.summary.create_file_writer(self.logdir).as_default():\n                values = _as_run(",
        ("tests/test_summaries.py", "-k", "from_python"),
    ),
    Mutation(
        "no validation metric among HParams' columns", "aeloops/tensorboard/summaries.py",
        'name if name in TIMINGS or name.startswith("val_") else f"epoch_{name}"',
        'name if name in TIMINGS else f"epoch_{name.removeprefix(\'val_\')}"',
        ("tests/test_summaries.py", "-k", "from_python"),
    ),
    Mutation(
        "row names at 14 points, unreadable on a card", "aeloops/tensorboard/images.py",
        "max(12, round(width * LABEL_FRACTION))", "14",
        ("tests/test_images.py", "-k", "legible"),
    ),
    Mutation(
        "a rewritten convolution's shifts transposed", "benchmarks/conv_rewrites.py",
        "first = (row * kw + column) * channels_out", "first = (column * kh + row) * channels_out",
        ("tests/test_benchmarks.py", "-k", "conv_rewrite"),
    ),
    Mutation(
        "the profile attributes a layer's ops to no layer", "benchmarks/conv_profile.py",
        'pattern = "".join(rf"{re.escape(part)}(_\\d+)*/" for part in path.split("/")[1:])',
        'pattern = "".join(rf"{re.escape(part)}/" for part in path.split("/")[1:])',
        ("tests/test_benchmarks.py", "-k", "conv_profile"),
    ),
    Mutation(
        "the profile's layers not in forward order", "benchmarks/conv_profile.py",
        "called.append((layer, ", "called.insert(0, (layer, ",
        ("tests/test_benchmarks.py", "-k", "conv_profile"),
    ),
    Mutation(
        "the dequantization noise drawn outside the model's checkpointed seed generator", "aeloops/models/gaussian.py",
        "keras.random.uniform(tf.shape(images), seed=self.seed_generator)", "keras.random.uniform(tf.shape(images))",
        ("tests/test_checkpoints.py", "-k", "resume_mid_epoch and convvae"),
    ),
    Mutation(
        "layer losses not divided by the replica count", "aeloops/objectives/objective.py",
        "values[LAYER_LOSSES] = tf.nn.scale_regularization_loss(summed)", "values[LAYER_LOSSES] = summed",
        ("tests/test_distribution.py", "-k", "mirrored or regularizers"),
    ),
    Mutation(
        "a preemption checkpoint drops the epoch's partial record", "aeloops/runs/callbacks.py",
        "        self.handler.save_checkpoint_if_preempted()\n",
        "        trainer.epoch_progress = None\n        self.handler.save_checkpoint_if_preempted()\n",
        ("tests/test_distribution.py", "-k", "sigterm"),
    ),
    Mutation(
        "the CLI leaves TensorFlow's start-up chatter on the terminal", "aeloops/train.py",
        "        stderr_filter.start()\n", "        pass\n",
        ("tests/test_cli_experience.py", "-k", "first_run_in"),
    ),
)  # fmt: skip


def _copy_ignoring(directory: str, names: list[str]) -> set[str]:
    # The top-level run folder only: aeloops/runs/ is the package's own (ignoring every "runs" dropped it).
    ignored = {name for name in names if name in (".git", "__pycache__") or name.endswith(".egg-info")}
    return ignored | ({"runs"} if pathlib.Path(directory) == REPO else set())


def outcome(mutation: Mutation | None, tests: tuple[str, ...]) -> int:
    """Runs ``tests`` on a copy of the repository with ``mutation`` applied (None: as it is); returns pytest's code.

    1 means a test failed (the mutation is caught); 0 that all passed; anything
    else (2: errors while collecting, an import that fails) says nothing about the mutation.
    """
    with tempfile.TemporaryDirectory(prefix="aeloops-mutant-") as scratch:
        copy = pathlib.Path(scratch) / "repo"
        shutil.copytree(REPO, copy, ignore=_copy_ignoring)
        (copy.parent / "shared").symlink_to(REPO.parent / "shared")
        if mutation is not None:
            target = copy / mutation.path
            text = target.read_text(encoding="utf-8")
            if text.count(mutation.old) != 1:
                raise SystemExit(f"{mutation.name}: the text to replace occurs {text.count(mutation.old)} times in "
                                 f"{mutation.path}; update the entry.")  # fmt: skip
            target.write_text(text.replace(mutation.old, mutation.new), encoding="utf-8")
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
            cwd=copy, capture_output=True, text=True,
        )  # fmt: skip
        return result.returncode


def main(argv: list[str] | None = None) -> int:
    """Runs the mutations whose names contain the first argument (all without one); exit 1 if any is not caught."""
    argv = sys.argv[1:] if argv is None else argv
    chosen = [mutation for mutation in MUTATIONS if not argv or argv[0] in mutation.name]
    # A control: the copy itself must pass, or every mutation would look caught.
    if outcome(None, ("tests/test_imports.py", "tests/test_sources.py")) != 0:
        raise SystemExit("The unmutated copy of the repository fails its tests; fix the copy before reading mutants.")
    uncaught = []
    for mutation in chosen:
        code = outcome(mutation, mutation.tests)
        verdict = {0: "SURVIVED", 1: "caught  "}.get(code, f"ERROR {code}")
        print(f"{verdict}  {mutation.name}", flush=True)
        uncaught += [] if code == 1 else [mutation.name]
    print(f"{len(chosen) - len(uncaught)} of {len(chosen)} caught.")
    return 1 if uncaught else 0


if __name__ == "__main__":
    sys.exit(main())
