"""The home partition: murmur2 of the key, as the Java client picks."""

from __future__ import annotations

from velox.schemas import partitioning


def test_murmur2_matches_the_java_clients_test_vectors() -> None:
    # From Kafka's own UtilsTest.testMurmur2.
    vectors = {
        b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829, b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    assert {key: partitioning.murmur2(key) for key in vectors} == vectors
