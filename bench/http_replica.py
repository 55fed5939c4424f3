"""The alternative RPC bench/containers.py measures ours against: a replica behind HTTP/1.1 (uvicorn,
Starlette, msgspec), the same model and the same MessagePack call and reply as bodies.

    python bench/http_replica.py PORT
"""

from __future__ import annotations

import sys

import uvicorn
from container_model import model
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from velox.schemas.container_rpc import Reply, decode_call, frame


async def call(request: Request) -> Response:
    asked = decode_call(await request.body())
    return Response(frame(Reply(asked.id, model(asked.inputs)))[4:], media_type="application/msgpack")


if __name__ == "__main__":
    uvicorn.run(Starlette(routes=[Route("/call", call, methods=["POST"])]), host="127.0.0.1", port=int(sys.argv[1]),
                log_level="warning")
