"""The edge's routes for items' attributes: ``POST /v1/items/{item}`` (admin) writes them to the
``items`` topic, ``GET /v1/items/{item}`` says what this edge holds (404: none)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from velox.control import items
from velox.errors import InvalidAttributes
from velox.schemas import ids, item_attributes
from velox.serving.edge import (
    Edge,
    acknowledged,
    authorize,
    bounded_body,
    checked_id,
    timed,
)


def routes() -> list[Route]:
    return [Route("/v1/items/{item:path}", timed("items", item_route), methods=["GET", "POST"])]


async def item_route(request: Request) -> Response:
    edge: Edge = request.app.state.edge
    item = checked_id("item", ids.given(request.path_params["item"]))
    if request.method == "GET":
        held = edge.models.content.attributes(item)
        if held is None:
            raise HTTPException(404, f"this edge holds no attributes of item {item!r}")
        return JSONResponse({"item": item, "attributes": held})
    authorize(edge, request)
    try:
        attributes = item_attributes.decode(await bounded_body(request))
    except InvalidAttributes as exc:
        raise HTTPException(400, f"bad attributes: {exc}") from None
    delivered = await acknowledged(edge, items.topic(edge.settings), ids.key(item),
                                   item_attributes.encode(attributes))
    if delivered is None:
        return JSONResponse({"error": 503, "detail": "Kafka did not acknowledge the attributes in time"},
                            status_code=503, headers={"Retry-After": "1"})
    return JSONResponse({"item": item, "attributes": attributes}, status_code=202)
