"""Several Python threads share one engine: each gets its own results."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import crossflow


def test_eight_threads_get_exactly_their_own_results(reference):
    # No cache: every call runs the model, so the threads' calls share its queue.
    model = crossflow.CrossEncoder(cache_pairs=0)
    pairs = [tuple(pair) for pair in reference["pairs"]]
    # Each thread its own order of the pairs, so that concurrent calls differ.
    work = [pairs[i * 31 :] + pairs[: i * 31] for i in range(8)]
    alone = [model.predict(w) for w in work]
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(model.predict, work))
    for want, got in zip(alone, together):
        np.testing.assert_array_equal(got, want)
    assert model.stats["pairs"] == 2 * 8 * len(pairs)


def test_python_threads_run_while_the_engine_works(reference):
    """The GIL is released during a call: a Python thread keeps running."""
    model = crossflow.CrossEncoder(cache_pairs=0)
    pairs = [tuple(pair) for pair in reference["pairs"]] * 2
    ticks, running = [], threading.Event()

    def heartbeat():
        while running.is_set():
            ticks.append(1)
            threading.Event().wait(0.001)

    running.set()
    beat = threading.Thread(target=heartbeat)
    beat.start()
    try:
        before = len(ticks)
        model.predict(pairs)
        during = len(ticks) - before
    finally:
        running.clear()
        beat.join()
    # Held, the GIL would let the heartbeat tick at most once or twice in the call.
    assert during >= 10, f"{during} heartbeat ticks during a call of {len(pairs)} pairs"
