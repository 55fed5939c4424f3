"""The ceiling a Python edge can reach (issue 39): a bare Starlette app on uvicorn serving the same
kind of predict and top-k from numpy arrays in memory: no state store, no versions, no cache,
no owners, no metrics; the answer's JSON encoded by msgspec as the edge's is. On uvicorn, as the
edge, or on granian (a Rust HTTP server that runs ASGI apps), to choose the edge's server by.

    BARE_EDGE=USERS,ITEMS,D python bench/bare_edge.py PORT
    BARE_EDGE=USERS,ITEMS,D granian --interface asgi --port PORT bare_edge:app   (from bench/)
"""

from __future__ import annotations

import os
import sys

import msgspec
import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from threadpoolctl import threadpool_limits

threadpool_limits(1, "blas")  # as the edge: one BLAS thread (velox/cli/flags.py says why)
users, items, d = (int(size) for size in os.environ["BARE_EDGE"].split(","))
rng = np.random.default_rng(0)
W = rng.standard_normal((users, d), dtype=np.float32)
F = rng.standard_normal((items, d), dtype=np.float32)
BIAS = rng.standard_normal(items, dtype=np.float32)


def answer(content: object) -> Response:
    return Response(msgspec.json.encode(content), media_type="application/json")


async def predict(request: Request) -> Response:
    user, item = int(request.query_params["user"]), int(request.query_params["item"])
    score = float(BIAS[item] + W[user] @ F[item])
    return answer({"user": user, "item": item, "score": score, "version": "bare"})


async def top_k(request: Request) -> Response:
    user, k = int(request.query_params["user"]), int(request.query_params.get("k", "10"))
    scores = BIAS + F @ W[user]
    best = np.argpartition(-scores, k)[:k]
    best = best[np.argsort(-scores[best])]
    return answer({"user": user, "items": [{"item": int(i), "score": float(scores[i])} for i in best]})


async def healthz(request: Request) -> Response:
    return answer({"status": "ok"})


app = Starlette(routes=[Route("/v1/models/default/predict", predict), Route("/v1/models/default/top_k", top_k),
                        Route("/healthz", healthz), Route("/readyz", healthz)])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
