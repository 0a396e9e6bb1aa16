"""``/openapi.json`` (OpenAPI 3.0, built from the deployed APIs' signatures) and ``/docs``.

``/docs`` is one self-contained page (no CDN, works offline) that renders the document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from inferd import __version__

if TYPE_CHECKING:
    from inferd.gateway.app import Gateway
    from inferd.gateway.http import HttpConnection
    from inferd.gateway.queue import ApiQueue
    from inferd.gateway.wire import Request

JSON_TYPES = {"b": "boolean", "i": "integer", "u": "integer", "f": "number", "O": "string", "U": "string"}
ERROR = {"$ref": "#/components/schemas/Error"}


def _tensor_schema(spec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    type_name = spec.get("type", "")
    if type_name.startswith("map("):  # an ONNX map input (a DictVectorizer's): a JSON object
        return {"type": "object", "description": f"{spec['name']}: {type_name}, a JSON object"}
    if type_name.startswith("seq("):  # an ONNX sequence input: tensors, each of any shape
        return {
            "type": "array",
            "items": {},
            "description": f"{spec['name']}: {type_name}, a list of tensors",
        }
    try:
        kind = np.dtype(spec["dtype"]).kind
    except TypeError:
        kind = "O"
    schema: dict[str, Any] = {"type": JSON_TYPES.get(kind, "string")}
    shape = spec.get("shape") or []
    for _ in shape:
        schema = {"type": "array", "items": schema}
    shown = "any" if spec.get("shape") is None else str(spec["shape"])
    schema["description"] = (
        f"{spec['name']}: {spec['dtype']} {shown} (-1: any size; a missing batch dim is added)"
    )
    return schema


def _request_schema(queue: ApiQueue) -> dict[str, Any]:
    info = queue.info
    inputs = info.get("inputs")
    if not inputs or "pre_inference" in info.get("handler_functions", []):
        return {"description": "Any JSON document: the request handler's pre_inference receives it."}
    by_name = {
        "type": "object",
        "properties": {spec["name"]: _tensor_schema(spec) for spec in inputs},
        "required": [spec["name"] for spec in inputs],
        "additionalProperties": False,
    }
    if len(inputs) == 1:
        return {"oneOf": [_tensor_schema(inputs[0]), by_name]}
    return by_name


def _responses(success: dict[str, Any], *codes: int) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": success}
    for code in codes:
        responses[str(code)] = {
            "description": _REASONS[code],
            "content": {"application/json": {"schema": ERROR}},
        }
    return responses


_REASONS = {
    400: "Malformed JSON, or input that does not fit the model's signature",
    401: "No API key (Authorization: Bearer KEY, or X-API-Key: KEY)",
    403: "Wrong API key",
    404: "Unknown API or model",
    413: "Body larger than the limit",
    500: "A request handler or the model failed",
    503: "Not ready (starting, failed to load, or shutting down)",
}
ANY_JSON = {"description": "JSON", "content": {"application/json": {"schema": {}}}}
# A Cortex-style answer is JSON, or a stream when predict / post_inference yields (gateway/stream.py).
PREDICTION = {
    "description": "JSON; an answer that streams (predict or post_inference yields) is Server-Sent Events "
    "(`data: <json>` per item) for Accept: text/event-stream, else one JSON document a line",
    "content": {
        "application/json": {"schema": {}},
        "text/event-stream": {"schema": {"type": "string"}},
        "application/x-ndjson": {"schema": {"type": "string"}},
    },
}
GENERATED = {
    "type": "object",
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "text_output": {"type": "string"},
    },
}
# An API with ``auth`` takes either header (gateway/auth.py).
KEYED: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
KEY_CODES: dict[bool, tuple[int, ...]] = {False: (), True: (401, 403)}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
NAME = {"name": "model_name", "in": "path", "required": True, "schema": {"type": "string"}}
VERSION = {"name": "model_version", "in": "path", "required": True, "schema": {"type": "string"}}


def document(gateway: Gateway, headers: dict[bytes, bytes] | None = None) -> dict[str, Any]:
    """The OpenAPI document of every route the gateway serves now (APIs with ``auth``: to key holders)."""
    paths: dict[str, Any] = {}
    shown = gateway.visible(headers or {})
    for queue in sorted(shown, key=lambda queue: queue.key):
        name = queue.name
        operation = queue.key.replace("/", "_").replace("-", "_")
        keyed = queue.config.api.auth is not None
        paths[queue.endpoint] = {
            "post": {
                "summary": f"Predict with api '{name}' (Cortex-style)",
                "operationId": f"predict_{operation}",
                "parameters": [
                    {
                        "name": "debug",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["true", "false"]},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _request_schema(queue)}},
                },
                "responses": _responses(PREDICTION, 400, *KEY_CODES[keyed], 413, 500, 503),
            },
            "get": {
                "summary": f"Status and signature of api '{name}'",
                "operationId": f"describe_{operation}",
                "responses": _responses(ANY_JSON, *KEY_CODES[keyed]),
            },
        }
        if keyed:  # a client generated from the document (or Swagger UI) knows to send a key
            for verb in paths[queue.endpoint].values():
                verb["security"] = KEYED
    simple = {
        "/healthz": "200 once every API has a ready replica",
        "/v2": "V2 server metadata",
        "/v2/health/live": "V2 server liveness",
        "/v2/health/ready": "V2 server readiness",
        "/v2/models": "Models (APIs) served",
        "/v1/models": "Models (APIs) served (KServe V1)",
    }
    for path, summary in simple.items():
        codes = (503,) if path in ("/healthz", "/v2/health/ready") else ()
        paths[path] = {
            "get": {
                "summary": summary,
                "operationId": "get" + path.replace("/", "_"),
                "responses": _responses(ANY_JSON, *codes),
            }
        }
    paths["/v2/repository/index"] = {
        "post": {
            "summary": 'Models with their version and state (Triton\'s; {"ready": true}: the ready ones)',
            "operationId": "v2_repository_index",
            "responses": _responses(ANY_JSON, 400),
        }
    }
    paths["/metrics"] = {
        "get": {
            "summary": "Prometheus metrics",
            "operationId": "metrics",
            "responses": {
                "200": {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    }
    for prefix, params in (
        ("/v2/models/{model_name}", [NAME]),
        ("/v2/models/{model_name}/versions/{model_version}", [NAME, VERSION]),
    ):
        suffix = "_versioned" if "versions" in prefix else ""
        paths[prefix] = {
            "get": {
                "summary": "V2 model metadata",
                "operationId": f"v2_metadata{suffix}",
                "parameters": params,
                "responses": _responses(ANY_JSON, 404, 503),
            }
        }
        paths[prefix + "/ready"] = {
            "get": {
                "summary": "V2 model readiness",
                "operationId": f"v2_ready{suffix}",
                "parameters": params,
                "responses": _responses(ANY_JSON, 404, 503),
            }
        }
        paths[prefix + "/config"] = {
            "get": {
                "summary": "V2 model configuration (Triton's model_configuration extension)",
                "operationId": f"v2_config{suffix}",
                "parameters": params,
                "responses": _responses(ANY_JSON, 404, 503),
            }
        }
        paths[prefix + "/infer"] = {
            "post": {
                "summary": "V2 inference (JSON, or the binary tensor data extension)",
                "operationId": f"v2_infer{suffix}",
                "parameters": params,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}}
                    },
                },
                "responses": _responses(ANY_JSON, 400, 404, 413, 500, 503),
            }
        }
        for verb, summary, media in (
            ("generate", "the items' text joined", "application/json"),
            ("generate_stream", "Server-Sent Events, one document per item", "text/event-stream"),
        ):
            paths[f"{prefix}/{verb}"] = {
                "post": {
                    "summary": f"V2 generate extension: the JSON body to predict, {summary}",
                    "operationId": f"v2_{verb}{suffix}",
                    "parameters": params,
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}},
                    "responses": _responses(
                        {"description": summary, "content": {media: {"schema": GENERATED}}},
                        400,
                        404,
                        413,
                        500,
                        503,
                    ),
                }
            }
    paths["/v1/models/{model_name}"] = {
        "get": {
            "summary": "TF Serving model status / KServe V1 readiness",
            "operationId": "v1_status",
            "parameters": [NAME],
            "responses": _responses(ANY_JSON, 404),
        }
    }
    paths["/v1/models/{model_name}/metadata"] = {
        "get": {
            "summary": "TF Serving signature defs",
            "operationId": "v1_metadata",
            "parameters": [NAME],
            "responses": _responses(ANY_JSON, 404, 503),
        }
    }
    for verb in ("predict", "classify", "regress"):
        paths[f"/v1/models/{{model_name}}:{verb}"] = {
            "post": {
                "summary": f"TensorFlow Serving {verb}",
                "operationId": f"v1_{verb}",
                "parameters": [NAME],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": _responses(ANY_JSON, 400, 404, 413, 500, 503),
            }
        }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "inferd",
            "version": __version__,
            "description": "Models served by inferd: Cortex-style endpoints, Open Inference Protocol V2 and "
            "TensorFlow Serving REST.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": SECURITY_SCHEMES,
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}},
                    "required": ["error"],
                },
                "InferenceRequest": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "parameters": {"type": "object"},
                        "inputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name", "shape", "datatype"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                                    "datatype": {"type": "string"},
                                    "parameters": {"type": "object"},
                                    "data": {},
                                },
                            },
                        },
                        "outputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
                            },
                        },
                    },
                },
            },
        },
    }


DOCS_PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>inferd API</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#1d2330;padding:0 1rem}
h1{font-size:1.5rem} .op{border:1px solid #d8dde6;border-radius:6px;margin:.6rem 0;padding:.5rem .8rem}
.m{display:inline-block;min-width:4.2rem;font-weight:600;text-transform:uppercase}
.post{color:#1f7a3f}.get{color:#1f4f9a} code{font-size:.9rem}
details pre{background:#f4f6f9;padding:.6rem;overflow:auto}
</style></head><body><h1>inferd API</h1><p id="about"></p><div id="ops"></div>
<script>
fetch('openapi.json').then(r=>r.json()).then(doc=>{
  document.getElementById('about').textContent=doc.info.description+' (version '+doc.info.version+')';
  const ops=document.getElementById('ops');
  for(const [path,item] of Object.entries(doc.paths)){for(const [method,op] of Object.entries(item)){
    const d=document.createElement('div');d.className='op';
    const head=document.createElement('div');
    head.innerHTML='<span class="m '+method+'"></span> <code></code> &mdash; <span></span>';
    head.children[0].textContent=method;head.children[1].textContent=path;
    head.children[2].textContent=op.summary||'';
    d.appendChild(head);
    const det=document.createElement('details');
    const s=document.createElement('summary');s.textContent='schemas';
    const pre=document.createElement('pre');
    const shown={parameters:op.parameters,requestBody:op.requestBody,responses:op.responses};
    pre.textContent=JSON.stringify(shown,null,2);
    det.appendChild(s);det.appendChild(pre);d.appendChild(det);ops.appendChild(d);}}
});
</script></body></html>"""


def route(gateway: Gateway, conn: HttpConnection, request: Request) -> None:
    if request.path.rstrip(b"/") == b"/docs":
        conn.respond(200, DOCS_PAGE, content_type=b"text/html; charset=utf-8")
    else:
        conn.respond(200, orjson.dumps(document(gateway, request.headers)))
