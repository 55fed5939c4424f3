"""Faust's own ceiling: a do-nothing agent over a topic, each event taken the usual way (``async for``).

    python bench/faust_noop.py BOOTSTRAP TOPIC GROUP DATA_DIR EVENTS

Prints one JSON line once it has seen EVENTS events: events, seconds from the first to the last,
events/s; bench/stream.py then stops it.
"""

from __future__ import annotations

import json
import sys
import time

import faust
import mode.loop


def main() -> None:
    bootstrap, topic_name, group, data, events = sys.argv[1:6]
    total = int(events)
    mode.loop.use("uvloop")  # as the Faust engine does
    app = faust.App(group, broker=f"kafka://{bootstrap}", datadir=data, consumer_auto_offset_reset="earliest",
                    web_enabled=False)
    topic = app.topic(topic_name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    seen = {"count": 0, "first": 0.0}

    @app.agent(topic)
    async def noop(stream: faust.StreamT[bytes]) -> None:
        async for _ in stream:
            seen["count"] += 1
            if seen["count"] == 1:
                seen["first"] = time.perf_counter()
            elif seen["count"] == total:
                seconds = time.perf_counter() - seen["first"]
                print(json.dumps({"events": total, "seconds": seconds, "events_per_s": total / seconds}), flush=True)

    faust.Worker(app, loglevel="warning", redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
