import struct

import numpy as np
import pytest

from velox.errors import InvalidUserState
from velox.model.rls import RLS
from velox.schemas import user_state
from velox.schemas.user_state import UserState


def test_sgd_record_round_trip() -> None:
    state = UserState("v-1", np.array([0.5, -1.25, 3.0], dtype=np.float32), count=12, offset=4041)
    decoded = user_state.decode(user_state.encode(state))
    assert (decoded.version, decoded.count, decoded.offset) == ("v-1", 12, 4041)
    assert decoded.w.tolist() == [0.5, -1.25, 3.0]
    assert decoded.a_inv is None and decoded.b is None
    assert decoded.seen.tolist() == []


def test_seen_items_round_trip_after_the_rls_statistics() -> None:
    start = RLS(l2=1.0).start("v-3", np.ones(3, dtype=np.float32), 0)
    state = start._replace(count=2, offset=9, seen=np.array([2**40, 7], np.int64), observed=np.array([7, 3]))
    decoded = user_state.decode(user_state.encode(state))
    assert decoded.seen.tolist() == [2**40, 7] and decoded.observed is not None
    assert decoded.observed.tolist() == [7, 3] and decoded.strength == 1.0
    np.testing.assert_array_equal(decoded.b, start.b)


@pytest.mark.parametrize("seen", [[], [5, 2**40, 7]])
def test_a_record_can_take_the_seen_items_of_another_record_of_the_user(seen: list[int]) -> None:
    old = UserState("v-1", np.zeros(2, np.float32), 4, 10, seen=np.array(seen, np.int64))
    start = RLS(l2=1.0).start("v-2", np.ones(3, dtype=np.float32), 0)
    new = start._replace(count=1, offset=11, seen=np.array([9], np.int64), observed=np.array([9]))
    decoded = user_state.decode(user_state.encode(new, user_state.encode(old)))
    assert (decoded.version, decoded.count, decoded.offset, decoded.seen.tolist()) == ("v-2", 1, 11, seen)
    assert decoded.observed is not None and decoded.observed.tolist() == [9]


def test_rls_record_round_trip_keeps_the_matrix_in_float64() -> None:
    state = UserState("v-2", np.array([1.0, 2.0], np.float32), a_inv=np.eye(2) / 3.0, b=np.array([3.0, 6.0]))
    decoded = user_state.decode(user_state.encode(state))
    assert decoded.a_inv is not None and decoded.b is not None
    assert decoded.a_inv.dtype == np.float64
    np.testing.assert_array_equal(decoded.a_inv, np.eye(2) / 3.0)
    np.testing.assert_array_equal(decoded.b, [3.0, 6.0])


def test_rls_record_at_d50_carries_the_symmetric_matrix_as_its_upper_triangle_exactly() -> None:
    rng = np.random.default_rng(3)
    half = rng.normal(size=(50, 50))
    a_inv = half @ half.T  # symmetric, as RLS keeps it
    state = UserState("v", rng.normal(size=50).astype(np.float32), 4, 9, a_inv, rng.normal(size=50))
    record = user_state.encode(state)
    assert len(record) == 22 + 4 + 1 + 200 + 8 * (50 * 51 // 2) + 8 * 50  # not 8 * 2500 for the matrix
    np.testing.assert_array_equal(user_state.decode(record).a_inv, a_inv)


def test_rls_record_at_d50_before_d_observations_carries_their_items_not_the_matrix() -> None:
    """What an RLS update writes while A⁻¹ is given by the observations: w, b, s and one more item."""
    start = RLS(l2=3.0).start("v", np.ones(50, dtype=np.float32), 40)
    state = start._replace(observed=np.arange(10, dtype=np.int64) * 7)
    record = user_state.encode(state)
    assert len(record) == 22 + 4 + 1 + 200 + 8 + 8 * 50 + 4 + 8 * 10
    decoded = user_state.decode(record)
    assert decoded.a_inv is None and decoded.strength == start.strength == 3.0 * 1.4
    assert decoded.observed is not None and decoded.observed.tolist() == list(range(0, 70, 7))
    np.testing.assert_array_equal(decoded.b, start.b)


def test_a_record_with_the_whole_matrix_still_reads() -> None:
    state = UserState("v-1", np.array([1.0, 2.0], np.float32), a_inv=np.eye(2) / 2.0, b=np.array([2.0, 4.0]))
    whole = (struct.pack("<BBHqqH", 2, 1, 2, 5, 7, 3) + b"v-1" + struct.pack("<I", 1) + state.w.tobytes()
             + state.a_inv.tobytes() + state.b.tobytes() + np.array([42], np.int64).tobytes())
    decoded = user_state.decode(whole)
    assert (decoded.count, decoded.offset, decoded.seen.tolist()) == (5, 7, [42])
    np.testing.assert_array_equal(decoded.a_inv, np.eye(2) / 2.0)


def test_sgd_record_at_d50_is_compact() -> None:
    state = UserState("initial", np.zeros(50, dtype=np.float32))
    assert len(user_state.encode(state)) == 22 + 4 + len("initial") + 200


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "format nothing"), (b"\x07" + bytes(30), "format 7"), (b"\x01" + bytes(40), "format 1, expected 2"),
     (b"\x02\x00\x03\x00" + bytes(18), "too short"), (b"\x02\x00\x03\x00" + bytes(22), "expected 38"),
     (b"\x02\x05\x03\x00" + bytes(30), "too short for d=3")],
)
def test_unreadable_record_says_why(data: bytes, message: str) -> None:
    with pytest.raises(InvalidUserState, match=message):
        user_state.decode(data)
