"""The edge's OpenAPI 3 document, served at /openapi.json (and fuzzed by schemathesis in the tests)."""

from __future__ import annotations

from typing import Any

from velox.schemas import ids

# An id in a query is text: an integer id's digits, or any string of up to 256 bytes of UTF-8
# without control characters (64 characters of any kind always fit: the document says no more).
TEXT_ID = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[^\\x00-\\x1f\\x7f]+$",
           "description": "a string id (up to 256 bytes of UTF-8, no control characters) or an integer id"}
ID = {"anyOf": [{"type": "integer", "minimum": 0, "maximum": ids.MAX_INT}, TEXT_ID]}  # in a JSON body
ERROR = {"description": "bad request", "content": {"application/json": {"schema": {
    "type": "object", "required": ["error", "detail"],
    "properties": {"error": {"type": "integer"}, "detail": {"type": "string"}}}}}}
JSON = {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}


def query(name: str, schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


MODEL = {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}
APP = {"name": "app", "in": "path", "required": True, "schema": {"type": "string"}}
ANSWERS = {"400": ERROR, "404": ERROR}


def document(served: list[str] | None = None) -> dict[str, Any]:
    """The document; ``served``: the models an app can link now (the system's model, popularity and
    the containers with a live replica), which the link call's path states."""
    served = served or ["default", "popularity"]
    observation_body = {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["user", "item"], "additionalProperties": False,
        "description": "a score (explicit feedback), a kind (implicit: view, click, ...) or both",
        "properties": {"user": ID, "item": ID, "score": {"type": "number"},
                       "kind": {"type": "string", "pattern": "^[a-z0-9_-]{1,32}$"},
                       "time": {"type": "number", "minimum": 0}, "context": {"type": "object"}}}}}}
    predict_body = {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["user", "item"], "additionalProperties": False,
        "properties": {"user": ID, "item": ID, "context": {"type": "object"}}}}}}
    k = {"type": "integer", "minimum": 1, "maximum": 1000}
    # Repeated: candidates=a&candidates=b, one id each (a single one of comma-separated integer ids is a list).
    candidates = {**query("candidates", {"type": "array", "items": TEXT_ID}, required=False),
                  "style": "form", "explode": True}
    top_k_parameters = [query("k", k, required=False), candidates,
                        query("exclude_seen", {"type": "string", "enum": ["true", "false"]}, required=False)]
    top_k_body = {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["user"], "additionalProperties": False,
        "properties": {"user": ID, "k": k, "candidates": {"type": "array", "items": ID},
                       "exclude_seen": {"type": "boolean"}}}}}}
    app_body = {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["default_output"],
        "properties": {"default_output": {"type": "number"}, "slo_ms": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
                       "policy": {"type": "string", "enum": ["fixed", "ab", "epsilon", "exp3", "thompson"]},
                       # Weights of 0 or more, at least one above 0 (or none at all).
                       "weights": {"type": "array", "items": {"type": "number", "minimum": 0},
                                   "not": {"type": "array", "minItems": 1, "items": {"maximum": 0}}},
                       "epsilon": {"type": "number", "minimum": 0, "maximum": 1},
                       "gamma": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1},
                       "per_user": {"type": "boolean"}, "sticky_s": {"type": "number", "minimum": 0}}}}}}
    admin = {"security": [{"admin": []}]}
    attribute = {"anyOf": [{"type": "string", "maxLength": 1024}, {"type": "number"},
                           {"type": "array", "items": {"type": "string", "maxLength": 1024}}]}
    item = {"name": "item", "in": "path", "required": True, "schema": TEXT_ID}
    attributes_body = {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "maxProperties": 256, "additionalProperties": attribute,
        "description": "an item's attributes: strings (categories), lists of strings (tags), numbers"}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Velox edge", "version": "1"},
        "paths": {
            "/v1/models": {"get": {"responses": {"200": JSON}}},
            "/v1/models/{model}/predict": {"get": {
                "parameters": [MODEL, query("user", TEXT_ID), query("item", TEXT_ID)], "responses": {"200": JSON, **ANSWERS}}},
            "/v1/models/{model}/top_k": {
                "get": {"parameters": [MODEL, query("user", TEXT_ID), *top_k_parameters],
                        "responses": {"200": JSON, **ANSWERS}},
                "post": {"parameters": [MODEL], "requestBody": top_k_body,
                         "responses": {"200": JSON, "413": ERROR, **ANSWERS}}},
            "/v1/models/{model}/observe": {"post": {
                "parameters": [MODEL], "requestBody": observation_body,
                "responses": {"202": JSON, "413": ERROR, "503": ERROR, **ANSWERS}}},
            "/v1/models/{model}/versions": {"get": {"parameters": [MODEL], "responses": {"200": JSON, **ANSWERS}}},
            "/v1/models/{model}/versions/{version}/activate": {"post": {
                "parameters": [MODEL, VERSION], "security": [{"admin": []}],
                "responses": {"200": JSON, "401": ERROR, **ANSWERS}}},
            "/v1/models/{model}/retrain": {"post": {
                "parameters": [MODEL, query("reason", {"type": "string"}, required=False)], "security": [{"admin": []}],
                "responses": {"202": JSON, "401": ERROR, "503": ERROR, **ANSWERS}}},
            "/velox/{model}/predict": {"get": {
                "parameters": [MODEL, query("userid", TEXT_ID), query("item", TEXT_ID)], "responses": {"200": JSON, **ANSWERS}}},
            "/velox/{model}/predict_top_k": {"get": {
                "parameters": [MODEL, query("userid", TEXT_ID), query("k", k, required=False)],
                "responses": {"200": JSON, **ANSWERS}}},
            "/velox/{model}/observe": {"post": {
                "parameters": [MODEL, query("userid", TEXT_ID), query("item", TEXT_ID), query("score", {"type": "number"})],
                "responses": {"202": JSON, "503": ERROR, **ANSWERS}}},
            "/v1/apps": {"get": {"responses": {"200": JSON}}},
            "/v1/apps/{app}": {
                "get": {"parameters": [APP], "responses": {"200": JSON, "404": ERROR}},
                "put": {"parameters": [APP], "requestBody": app_body, **admin,
                        "responses": {"200": JSON, "401": ERROR, **ANSWERS}}},
            "/v1/apps/{app}/models/{model}": {
                "post": {"parameters": [APP, {**MODEL, "schema": {"type": "string", "enum": served}}], **admin,
                         "responses": {"200": JSON, "401": ERROR, **ANSWERS}},
                "delete": {"parameters": [APP, MODEL], **admin, "responses": {"200": JSON, "401": ERROR, **ANSWERS}}},
            "/v1/apps/{app}/predict": {
                "get": {"parameters": [APP, query("user", TEXT_ID), query("item", TEXT_ID)], "responses": {"200": JSON, **ANSWERS}},
                "post": {"parameters": [APP], "requestBody": predict_body, "responses": {"200": JSON, "413": ERROR, **ANSWERS}}},
            "/v1/apps/{app}/top_k": {"get": {
                "parameters": [APP, query("user", TEXT_ID), *top_k_parameters], "responses": {"200": JSON, **ANSWERS}}},
            "/v1/items/{item}": {
                "get": {"parameters": [item], "responses": {"200": JSON, **ANSWERS}},
                "post": {"parameters": [item], "requestBody": attributes_body, **admin,
                         "responses": {"202": JSON, "401": ERROR, "413": ERROR, "503": ERROR, **ANSWERS}}},
            "/healthz": {"get": {"responses": {"200": JSON}}},
            "/readyz": {"get": {"responses": {"200": JSON, "503": JSON}}},
        },
        "components": {"securitySchemes": {"admin": {"type": "http", "scheme": "bearer"}}},
    }
