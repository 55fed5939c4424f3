"""bench/container_load.py's paced load, in a process of its own: Poisson arrivals sent to the
client under test when they are due, whatever that client's event loop is doing, each timed from
when it was due to its answer (a generator in the same loop waits with it, and times less).

    python bench/container_arrivals.py PORT RATE SECONDS

Sends each arrival's number (8 bytes) to 127.0.0.1:PORT, reads back the number and the cause of
a default (a byte of length, then the text; empty when the container answered), and prints a JSON
object: every arrival's latency (s), the defaults by cause, and the seconds from the first arrival
due to the last answer.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import sys
import threading
import time
from collections import Counter

ASKED, ANSWERED = struct.Struct("!Q"), struct.Struct("!QB")
SEED = 7


def main() -> None:
    port, rate, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    rng, due, at = random.Random(SEED), [], 0.0
    while (at := at + rng.expovariate(rate)) < seconds:
        due.append(at)
    latencies, causes = [0.0] * len(due), Counter[str]()
    connection = socket.create_connection(("127.0.0.1", port))
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    started = time.perf_counter() + 0.05

    def receive() -> None:
        answers = connection.makefile("rb")
        for _ in due:
            number, size = ANSWERED.unpack(answers.read(ANSWERED.size))
            latencies[number] = time.perf_counter() - started - due[number]
            if size:
                causes[answers.read(size).decode()] += 1

    receiving = threading.Thread(target=receive)
    receiving.start()
    sent = 0
    while sent < len(due):
        now = time.perf_counter() - started
        if due[sent] > now:
            time.sleep(min(due[sent] - now, 0.001))
            continue
        ready = sent
        while ready < len(due) and due[ready] <= now:
            ready += 1
        connection.sendall(b"".join(ASKED.pack(number) for number in range(sent, ready)))
        sent = ready
    receiving.join()
    print(json.dumps({"latencies": latencies, "causes": causes, "seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
