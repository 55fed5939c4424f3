"""The home partition: murmur2 of the key, as the Java client picks."""

from __future__ import annotations

import numpy as np

from velox.schemas import partitioning


def test_murmur2_matches_the_java_clients_test_vectors() -> None:
    # From Kafka's own UtilsTest.testMurmur2.
    vectors = {
        b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829, b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    assert {key: partitioning.murmur2(key) for key in vectors} == vectors


def test_murmur2_of_many_keys_at_once_equals_the_scalar_one_on_strings_and_integers() -> None:
    rng = np.random.default_rng(1)
    numbers = [str(n).encode() for n in rng.integers(0, 2**63 - 1, 300).tolist() + list(range(120))]
    strings = ["".join(chr(c) for c in rng.integers(33, 0x2FF, rng.integers(1, 40))).encode() for _ in range(300)]
    vectors = [b"21", b"foobar", b"a-little-bit-long-string", b"abc"]
    for keys in (numbers, strings + vectors, numbers + strings):
        given = np.array(keys, np.bytes_)
        assert partitioning.murmur2_many(given).tolist() == [partitioning.murmur2(key) for key in keys]
        assert partitioning.homes(given, 7).tolist() == [partitioning.home(key, 7) for key in keys]
