"""Model containers (Clipper's word): their registrations and the RPC the edge speaks to them.

The compacted ``containers`` topic holds, keyed ``<name>/<version>/<replica>``, each live replica's
``Replica`` record (re-sent as its heartbeat; a tombstone when it stops), and keyed ``<name>``
the ``Selected`` version the edges route to (``velox container set-version``; without one, the
highest version with a live replica).

The RPC is length-prefixed MessagePack over a TCP connection that stays open: a 4-byte
big-endian length, then a ``Call`` (a batch of inputs); the replica answers each call with a
``Reply`` carrying the call's id (in the order its calls finish, when it runs several at once).
One output per input, or the error that replaced them all.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

from velox.schemas import records
from velox.schemas.ids import Id

FRAME = struct.Struct(">I")
MAX_FRAME = 64 * 2**20


class Input(msgspec.Struct, array_like=True, frozen=True):
    """What a container scores: a user, an item, and the request's context features (a JSON object)."""

    user: Id  # as the request gave it (an integer id as an int)
    item: Id
    context: dict[str, Any] = {}


class Call(msgspec.Struct, array_like=True):
    id: int
    inputs: list[Input]


class Reply(msgspec.Struct, array_like=True):
    id: int
    outputs: list[Any] = []  # numbers; checked by the edge (length, finite)
    error: str = ""


INPUTS = ("user,item,context", "user,item")  # what a container's model reads of each request


class Replica(msgspec.Struct, frozen=True, tag="replica"):
    name: str
    version: str
    replica: str
    address: str  # host:port of its RPC
    pid: int
    heartbeat_at: float  # time.time() of this record
    input: str = INPUTS[0]  # "user,item": the context is not sent, and answers are cached without it
    # Calls it runs at once: the edge keeps no more in flight to it, so that requests wait at the
    # edge, where the next call takes them together, not in the replica's socket one call each.
    # Records from before the field ran one at a time.
    concurrency: int = 1


class Selected(msgspec.Struct, frozen=True, tag="selected"):
    name: str
    version: str


Registration = Replica | Selected

_call, _reply = msgspec.msgpack.Decoder(Call), msgspec.msgpack.Decoder(Reply)
_msgpack = msgspec.msgpack.Encoder()


def frame(message: Call | Reply) -> bytes:
    body = _msgpack.encode(message)
    return FRAME.pack(len(body)) + body


def decode_call(body: bytes) -> Call:
    return _call.decode(body)


def decode_reply(body: bytes) -> Reply:
    return _reply.decode(body)


encode = records.encode
decode_registration = records.decoder(Registration)  # type: ignore[arg-type]
