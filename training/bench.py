"""``percepnet-train bench``: where a training step's time goes, in frames per second.

Three figures, one run, same model and batch:

* **feed**: the input pipeline alone (:class:`~training.train.ExampleStore` through
  ``make_dataset``), batches drawn and discarded;
* **step**: ``train_on_batch`` on one batch held in memory (the model's ceiling);
* **fit**: ``model.fit`` fed by the pipeline, as training runs.

If *fit* is well below *step* while *feed* is above it, the pipeline and the
model compete for the same cores; if *feed* is below *step*, the pipeline is
the bottleneck. A frame is 10 ms of audio.
"""

import time

import numpy as np


def _frames_per_second(batches, seconds, batch_frames):
    return batches * batch_frames / seconds


def run(cache_dirs, size="lite", batch_size=128, steps=12, warmup=3, say=print, **fit_options):
    """Measure feed, step and fit rates; returns ``{name: frames per second}``."""
    import tensorflow as tf

    from .train import ExampleStore, compile_model, make_dataset
    with tf.distribute.get_strategy().scope():
        model, config = compile_model(size, 1e-4, **fit_options)
    started = time.perf_counter()
    store = ExampleStore(cache_dirs, "train", say)
    say(f"load: {time.perf_counter() - started:.1f} s for {store.count:,} examples (once per run)")
    dataset = make_dataset(store, batch_size, shuffle=True, with_vad=config.vad_head)
    iterator = iter(dataset)
    batch = next(iterator)
    batch_frames = int(np.prod(batch[0].shape[:2]))
    for _ in range(warmup):
        next(iterator)
    started = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    feed = _frames_per_second(steps, time.perf_counter() - started, batch_frames)
    say(f"feed: {feed:,.0f} frames/s ({batch_size} x {batch[0].shape[1]} frames per batch)")
    for _ in range(warmup):
        model.train_on_batch(*batch)
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(*batch)
    step = _frames_per_second(steps, time.perf_counter() - started, batch_frames)
    say(f"step: {step:,.0f} frames/s (one batch in memory, {model.count_params():,} weights)")
    model.fit(dataset, steps_per_epoch=warmup, epochs=1, verbose=0)
    started = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    fit = _frames_per_second(steps, time.perf_counter() - started, batch_frames)
    say(f"fit:  {fit:,.0f} frames/s (pipeline feeding the model)")
    return {"feed": feed, "step": step, "fit": fit}
