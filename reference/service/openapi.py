"""The service's OpenAPI 3.0 document (served at /openapi.json), written out by hand.

The API is small and its routing is hand-made (ids are raw path segments), so the
document is built here rather than derived from route decorators. Every route appears
twice: under ``/v1`` (the default namespace) and under ``/v1/ns/{namespace}``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_TIME = {"type": "string", "format": "date-time", "nullable": True}
_TTL = {"type": "number", "nullable": True, "exclusiveMinimum": True, "minimum": 0, "maximum": 1e10,
        "description": "Seconds of sliding expiry; null = never expires; leave the member out to keep (KEEP)."}

SCHEMAS: dict[str, Any] = {
    "SessionInfo": {
        "type": "object",
        "required": ["id", "owner", "version", "created_at", "updated_at", "expires_at", "ttl"],
        "properties": {
            "id": {"type": "string"}, "owner": {"type": "string", "nullable": True},
            "version": {"type": "integer"}, "created_at": _TIME, "updated_at": _TIME,
            "expires_at": _NULLABLE_TIME, "ttl": {"type": "number", "nullable": True},
        },
    },
    "Session": {
        "allOf": [{"$ref": "#/components/schemas/SessionInfo"},
                  {"type": "object", "required": ["state"], "properties": {"state": {"type": "object"}}}],
    },
    "Page": {
        "type": "object", "required": ["items", "next_cursor"],
        "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/SessionInfo"}},
                       "next_cursor": {"type": "string", "nullable": True}},
    },
    "Problem": {
        "type": "object", "required": ["type", "title", "status", "error"],
        "description": "RFC 9457 problem details; `error` names the contract error (SessionNotFound, ...).",
        "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                       "error": {"type": "string"}, "detail": {"type": "string"},
                       "path": {"type": "string"}, "expected": {"type": "integer"},
                       "actual": {"type": "integer", "nullable": True}},
    },
    "CreateBody": {
        "type": "object",
        "properties": {"state": {"type": "object", "nullable": True, "description": "null or left out: {}."},
                       "id": {"type": "string", "minLength": 1, "maxLength": 256, "nullable": True,
                              "description": "Leave out (or null) to have the store generate one."},
                       "owner": {"type": "string", "nullable": True}, "ttl": _TTL},
    },
    "SaveBody": {"type": "object", "required": ["state"], "properties": {"state": {"type": "object"}, "ttl": _TTL}},
    "ApplyBody": {
        "type": "object",
        "properties": {"set": {"type": "object", "description": "Top-level keys to set."},
                       "delete": {"type": "array", "items": {"type": "string"},
                                  "description": "Top-level keys to remove."}},
    },
    "AppendBody": {"type": "object", "required": ["key", "items"],
                   "properties": {"key": {"type": "string"}, "items": {"type": "array"}}},
    "TouchBody": {"type": "object", "properties": {"ttl": _TTL}},
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(schema: str | None, status: str = "200", description: str = "OK") -> dict[str, Any]:
    if schema is None:
        return {status: {"description": description}}
    return {status: {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}}


def _problems(*statuses: int) -> dict[str, Any]:
    words = {400: "Invalid id or argument", 401: "Missing or wrong bearer token", 404: "No live session",
             405: "Method not allowed", 409: "A live session has this id", 412: "Version conflict (If-Match)",
             422: "Invalid state or ttl", 503: "Backend unavailable"}
    return {str(s): {"description": words[s], "content": {"application/problem+json": {"schema": _ref("Problem")}}}
            for s in (*statuses, 400, 401, 503)}


def _body(schema: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": _ref(schema)}}}


ID = {"name": "id", "in": "path", "required": True, "description": "The session id, percent-encoded as one segment.",
      "schema": {"type": "string", "minLength": 1, "maxLength": 256}}
NAMESPACE = {"name": "namespace", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}}
IF_MATCH = {"name": "If-Match", "in": "header", "required": False,
            "description": "The version the write expects, as an ETag (\"7\").",
            "schema": {"type": "string", "pattern": "^(W/)?\"?-?[0-9]{1,18}\"?$"}}
OWNER = {"name": "owner", "in": "query", "required": False, "schema": {"type": "string"}}


def _operations() -> dict[str, Any]:
    collection = {
        "post": {"operationId": "create", "summary": "Create a session", "requestBody": _body("CreateBody", False),
                 "responses": {**_ok("Session", "201", "Created"), **_problems(409, 422)}},
        "get": {"operationId": "list", "summary": "List live sessions by id, one page",
                "parameters": [OWNER,
                               {"name": "limit", "in": "query", "required": False,
                                "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                               {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}}],
                "responses": {**_ok("Page"), **_problems()}},
    }
    item = {
        "parameters": [ID],
        "get": {"operationId": "get", "summary": "Read a session", "responses": {**_ok("Session"), **_problems(404)}},
        "put": {"operationId": "save", "summary": "Replace the state", "parameters": [IF_MATCH],
                "requestBody": _body("SaveBody"), "responses": {**_ok("Session"), **_problems(404, 412, 422)}},
        "patch": {"operationId": "apply", "summary": "Apply a delta of top-level keys", "parameters": [IF_MATCH],
                  "requestBody": _body("ApplyBody"), "responses": {**_ok("Session"), **_problems(404, 412, 422)}},
        "delete": {"operationId": "delete", "summary": "Delete a session",
                   "responses": {"204": {"description": "Deleted"}, **_problems(404)}},
    }
    append = {"parameters": [ID], "post": {
        "operationId": "append", "summary": "Append items to the list at a top-level key", "parameters": [IF_MATCH],
        "requestBody": _body("AppendBody"), "responses": {**_ok("SessionInfo"), **_problems(404, 412, 422)}}}
    touch = {"parameters": [ID], "post": {
        "operationId": "touch", "summary": "Restart (or change) the expiry period",
        "requestBody": _body("TouchBody", False), "responses": {**_ok("SessionInfo"), **_problems(404, 422)}}}
    count = {"get": {"operationId": "count", "summary": "Count live sessions", "parameters": [OWNER],
                     "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {
                         "type": "object", "required": ["count"],
                         "properties": {"count": {"type": "integer"}}}}}}, **_problems()}}}
    purge = {"post": {"operationId": "purge", "summary": "Remove expired sessions",
                      "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {
                          "type": "object", "required": ["purged"],
                          "properties": {"purged": {"type": "integer"}}}}}}, **_problems()}}}
    return {"/sessions": collection, "/sessions/{id}": item, "/sessions/{id}/append": append,
            "/sessions/{id}/touch": touch, "/count": count, "/purge": purge}


def _with_namespace(path_item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in path_item.items():
        if key == "parameters":
            out[key] = [NAMESPACE, *value]
        else:
            out[key] = {**value, "operationId": f"{value['operationId']}InNamespace"}
    if "parameters" not in out:
        out["parameters"] = [NAMESPACE]
    return out


def openapi_document(*, title: str = "sessionspec", auth: bool = False) -> dict[str, Any]:
    """The whole document; ``auth`` adds the bearer scheme as a global requirement."""
    paths: dict[str, Any] = {
        "/health": {"get": {"operationId": "health", "summary": "Liveness", "security": [],
                            "responses": {"200": {"description": "OK"}}}},
        "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus text metrics",
                             "responses": {"200": {"description": "OK",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}},
                                           **_problems()}}},
        "/v1": {"get": {"operationId": "capabilities", "summary": "The store's capabilities",
                        "responses": {"200": {"description": "OK"}, **_problems()}}},
        "/v1/ns/{namespace}": {
            "parameters": [NAMESPACE],
            "get": {"operationId": "capabilitiesInNamespace", "summary": "Capabilities (opens the namespace)",
                    "responses": {"200": {"description": "OK"}, **_problems()}},
            "delete": {"operationId": "dropNamespace", "summary": "Delete the namespace's data and close its store",
                       "responses": {"200": {"description": "OK"}, **_problems()}},
        },
    }
    for suffix, item in _operations().items():
        paths["/v1" + suffix] = item
        paths["/v1/ns/{namespace}" + suffix] = _with_namespace(item)
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": f"{title} session store service", "version": "1",
                 "description": "The session-store contract (docs/spec.md) over HTTP. Errors are "
                                "application/problem+json whose `error` member names the contract error."},
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }
    if auth:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc
