"""The same per-event SGD update as the worker's, written the idiomatic Quix Streams way: a stateful
``update`` over JSON state (RocksDB, changelog topic, recovery; exactly-once through Kafka
transactions when asked). bench/stream.py runs it in a virtualenv of its own (Quix Streams pins
a confluent-kafka of its own), so this file imports only Quix Streams and numpy.

    python bench/quix_worker.py BOOTSTRAP TOPIC GROUP STATE_DIR VERSION.npz EVENTS exactly-once|at-least-once \
        RATE L2 EVIDENCE

RATE, L2 and EVIDENCE are the worker's sgd parameters (velox.model.sgd), passed by bench/stream.py.

Prints one JSON line: events, seconds from the first event to the last, events/s.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from quixstreams import Application, State


def main() -> None:
    bootstrap, topic_name, group, state_dir, version_path, events, guarantee = sys.argv[1:8]
    rate, l2, evidence = map(float, sys.argv[8:11])
    total = int(events)
    with np.load(version_path, allow_pickle=False) as version:
        item_row = {int(item): row for row, item in enumerate(version["item_ids"])}
        factors, bias = version["item_factors"].astype(np.float64), version["item_bias"].astype(np.float64)
        mean_user = version["user_vectors"].mean(axis=0) if len(version["user_ids"]) else np.zeros(factors.shape[1] + 1)
        global_mean = float(version["global_mean"])
    app = Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
                      processing_guarantee=guarantee, state_dir=state_dir, loglevel="WARNING")
    topic = app.topic(topic_name, key_deserializer="bytes", value_deserializer="json")
    clock = {"first": 0.0, "done": 0}

    def learn(event: dict, state: State) -> None:
        if not clock["first"]:
            clock["first"] = time.perf_counter()
        f = np.zeros(len(mean_user))
        f[-1] = 1.0
        row = item_row.get(event["item"])
        b = 0.0
        if row is not None:
            f[:-1], b = factors[row], bias[row]
        w = np.array(state.get("w", default=None) or mean_user, np.float64)
        count = state.get("count", default=0)
        error = event["score"] - global_mean - b - float(w @ f)
        w += rate / (1.0 + count / evidence) * (error * f - l2 * (w - mean_user))
        state.set("w", w.astype(np.float32).tolist())
        state.set("count", count + 1)
        clock["done"] += 1
        if clock["done"] >= total:
            clock["last"] = time.perf_counter()
            app.stop()

    app.dataframe(topic).update(learn, stateful=True)
    app.run()
    seconds = clock["last"] - clock["first"]
    print(json.dumps({"events": total, "seconds": seconds, "events_per_s": total / seconds}))


if __name__ == "__main__":
    main()
