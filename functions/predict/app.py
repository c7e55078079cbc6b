"""HTTP API (v2): price houses, look up precomputed prices, describe the serving model."""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from typing import Annotated, Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.metrics import MetricUnit
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from kcprice import registry
from kcprice.config import PredictSettings
from kcprice.emf import Emf
from kcprice.errors import NoModelError, NotFoundError, StoreUnavailableError
from kcprice.schema import (
    DATE_MESSAGE,
    MAX_BATCH,
    ErrorResponse,
    HousePrice,
    PredictRequest,
    PredictResponse,
    predict_response,
)
from kcprice.storage import STORED_COMPS, get_price, is_transient

logger = Logger()
metrics = Emf()  # not Powertools' Metrics: ~40 us a request on the hot path (kcprice.emf)
TITLE = "kc-price"
DESCRIPTION = "King County house prices: valuations by the serving model, and precomputed prices of the inventory"
app = APIGatewayHttpResolver(enable_validation=True)
app.enable_swagger(path="/swagger", title=TITLE, version="1", description=DESCRIPTION)


def errors(*statuses: int) -> dict:
    """OpenAPI responses for the errors a route answers, all in this API's one error format."""
    what = {
        404: "Not found",
        415: "The body is not application/json",
        422: "Invalid request: the message and `detail` name each field and what is wrong",
        503: "No model yet, or the model store is not answering: retry",
    }
    return {s: {"description": what[s], "content": {"application/json": {"model": ErrorResponse}}} for s in statuses}


@dataclass
class Runtime:
    settings: PredictSettings
    s3: Any
    ddb: Any
    cache: registry.ChampionCache


def _clients() -> tuple[Any, Any]:
    # SigV4 for the presigned card link: botocore still presigns with SigV2 by default, which S3 refuses for every
    # bucket created since June 2020.
    return boto3.client("s3", config=Config(signature_version="s3v4")), boto3.client("dynamodb")


@functools.cache
def runtime() -> Runtime:
    """Cold start: settings, clients and the champion cache, built once per execution environment."""
    settings = PredictSettings()
    s3, ddb = _clients()
    return Runtime(settings, s3, ddb, registry.ChampionCache(s3, settings.bucket, settings.model_ttl_seconds))


# --- SnapStart (template parameter SnapStart) ------------------------------------------------------------------
def before_snapshot() -> None:
    """Load the champion into the snapshot: a restored environment answers its first request without loading."""
    cache = runtime().cache
    try:
        model, _ = cache.get()  # not _champion(): its load metric would be flushed with the first request's
    except (NoModelError, StoreUnavailableError) as e:  # a new stack: the first request loads it instead
        logger.warning("no champion in the snapshot", extra={"reason": str(e)})
        return
    loaded = cache.take_load_seconds()
    t0 = time.perf_counter()
    model.prepare()  # the explanation tables and batch ranks too: no restored environment builds them in a request
    extra = {"model_version": model.version, "load_s": loaded, "prepare_s": round(time.perf_counter() - t0, 3)}
    logger.info("model loaded before the snapshot", extra=extra)


def after_restore() -> None:
    """A snapshot may be restored hours later on another host: its connections are dead (new clients), and its
    monotonic clock is not this host's, so the TTL clock is void: the pointer is checked on the next request."""
    rt = runtime()
    rt.s3, rt.ddb = _clients()
    rt.cache.rebind(rt.s3)
    logger.info("restored from a snapshot: new clients; the champion is checked at the next request")


try:  # Lambda's runtime provides the module (python3.12+); elsewhere there is no snapshot to take
    from snapshot_restore_py import register_after_restore, register_before_snapshot
except ImportError:  # pragma: no cover - outside Lambda and without the dev package
    pass
else:
    register_before_snapshot(before_snapshot)
    register_after_restore(after_restore)


def _champion() -> tuple:
    """The serving model and its pointer; a request that (re)loaded it reports the load once."""
    cache = runtime().cache
    model, pointer = cache.get()
    if (loaded := cache.take_load_seconds()) is not None:
        metrics.add_metric("ModelLoadTime", MetricUnit.Milliseconds, loaded * 1000)
        logger.info("model loaded", extra={"model_version": model.version, "load_ms": round(loaded * 1000, 1)})
    return model, pointer


def _typed_body(app: APIGatewayHttpResolver, next_middleware):
    """POST /predict's body, parsed by pydantic straight from the JSON text.

    The hot route skips Powertools' generic validation (route enable_validation=False): its dependency walk costs
    ~45 us a call, three times the parse itself. Errors come out as the same RequestValidationError, locations
    prefixed with "body" as Powertools does, so clients and the 422 handler see one format. The handler keeps its
    typed signature, so the OpenAPI document is unchanged.
    """
    event = app.current_event
    content_type = event.headers.get("content-type", "").strip()
    if content_type and not _is_json(content_type):
        raise RequestUnsupportedContentType(
            "Unsupported content type",
            errors=[{"type": "unsupported_content_type", "loc": ("body",), "msg": f"got {content_type}"}],
        )
    try:
        request = PredictRequest.model_validate_json(event.decoded_body or "")
    except ValidationError as e:
        raise RequestValidationError(
            [{**err, "loc": ("body", *err["loc"])} for err in e.errors(include_url=False, include_context=False)]
        ) from None
    # Powertools' own (private) way to hand a route its arguments; tests/unit/test_library_internals.py fails if a
    # release changes it.
    app.context["_route_args"] = {**app.context.get("_route_args", {}), "request": request}
    return next_middleware(app)


@app.post(
    "/predict",
    summary=f"Price 1..{MAX_BATCH} houses",
    enable_validation=False,
    middlewares=[_typed_body],
    responses={
        200: {
            "description": "Prices, and the model version that made them",
            "content": {"application/json": {"model": PredictResponse}},
        },
        **errors(415, 422, 503),
    },
)
def predict(request: PredictRequest):  # no return annotation: the body is serialized here, once
    return Response(200, content_types.APPLICATION_JSON, _valuations(request))


def _valuations(request: PredictRequest) -> str:
    """POST /predict's answer as JSON text: the one domain call of the route, on either path (below)."""
    t0 = time.perf_counter()
    model, _ = _champion()
    v = model.value_houses(request.houses, request.coverage)
    metrics.add_metric("HousesPriced", MetricUnit.Count, len(v["price"]))
    metrics.add_metric("PredictLatency", MetricUnit.Milliseconds, (time.perf_counter() - t0) * 1000)
    return predict_response(model, request, v)


_OK_HEADERS = {"Content-Type": content_types.APPLICATION_JSON}


def _is_json(content_type: str) -> bool:
    # Media types are case-insensitive and may carry parameters (charset); "application/jsonx" is another type.
    return content_type.split(";")[0].strip().lower() == content_types.APPLICATION_JSON


def _fast_predict(event: dict) -> dict | None:
    """POST /predict's successful answer without the resolver; None for anything else, which the resolver answers.

    Measured (interleaved, one process, one house): the resolver's routing, middleware and response building cost
    ~145 us a request (521 us through app.resolve, 377 us for the same calls made directly) - the whole of the
    route's 150 us budget. So a request API Gateway routed to POST /predict (its routeKey) with a JSON body that
    parses and prices is answered here, in the resolver's exact response format (tests compare the two on the
    same requests). A bad body, no model or a store error returns None before anything was counted: the resolver
    then runs the request and answers it in the API's one error format, so errors have a single source.
    """
    if event.get("routeKey") != "POST /predict" or event.get("isBase64Encoded"):
        return None
    # Header names are case-insensitive (API Gateway lowercases them; other callers may not), as for the resolver.
    headers = event.get("headers") or {}
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "").strip()
    if content_type and not _is_json(content_type):
        return None
    try:
        request = PredictRequest.model_validate_json(event.get("body") or "")
        body = _valuations(request)
    except (ValidationError, NoModelError, StoreUnavailableError, ClientError, BotoCoreError):
        return None
    return {"statusCode": 200, "body": body, "isBase64Encoded": False, "headers": dict(_OK_HEADERS), "cookies": []}


@app.get(
    "/houses/<house_id>/price",
    summary="Precomputed price of a house in the inventory",
    responses={
        200: {"description": "The stored price", "content": {"application/json": {"model": HousePrice}}},
        **errors(404, 422),
    },
)
def house_price(
    house_id: Annotated[str, Path(pattern=r"^\d{1,11}$", description="KC house id")],
    comps: Annotated[int, Query(ge=0, le=STORED_COMPS, description="comparable sales stored with it")] = 0,
) -> dict:
    rt = runtime()
    item = get_price(rt.ddb, rt.settings.table, house_id, comps)
    if item is None:
        raise NotFoundError(
            f"no precomputed price for house {house_id}: it is not in the inventory, or precompute has not run "
            "yet; POST /predict prices any house"
        )
    return item


@app.get("/model", summary="Metadata of the serving model", responses=errors(503))
def model_info() -> dict:
    rt = runtime()
    _, pointer = _champion()
    meta = registry.version_metadata(rt.s3, rt.settings.bucket, pointer["version"])
    links = {}
    if "card.html" in meta.get("files", []):  # a signed link, so the card opens in a browser
        key = registry.version_prefix(pointer["version"]) + "card.html"
        links["card_url"] = rt.s3.generate_presigned_url(
            "get_object", Params={"Bucket": rt.settings.bucket, "Key": key}, ExpiresIn=3600
        )
    if not rt.settings.expose_lineage:
        pointer, meta = registry.public_view(pointer, meta)
    return {"champion": pointer, **links, "metadata": meta}


@app.get("/health", summary="Liveness, and whether a model is loaded")
def health() -> dict:
    try:
        model, _ = _champion()
        return {"status": "ok", "model_version": model.version}
    except NoModelError:
        return {"status": "ok", "model_version": None}


@app.get("/openapi.json", summary="This API's OpenAPI document", include_in_schema=False)
def openapi():  # no return annotation: Response is not a pydantic type
    return Response(200, content_types.APPLICATION_JSON, openapi_document())


@functools.cache
def openapi_document() -> str:
    """The document /swagger serves, with the errors as this API answers them: Powertools adds its own 422 schema
    (HTTPValidationError, whose ValidationError requires a `msg` it never defines) to every validated route."""
    doc = json.loads(app.get_openapi_json_schema(title=TITLE, version="1", description=DESCRIPTION))
    schemas = doc["components"]["schemas"]
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.update(ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")["$defs"])
    schemas["ErrorResponse"] = {
        k: v
        for k, v in ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}").items()
        if k != "$defs"
    }
    for path in doc["paths"].values():
        for op in path.values():
            for resp in op.get("responses", {}).values():
                for media in resp.get("content", {}).values():
                    if media.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                        media["schema"] = {"$ref": "#/components/schemas/ErrorResponse"}
    return json.dumps(doc)


def _error(status: int, message: str, **extra) -> Response:
    return Response(status, content_types.APPLICATION_JSON, {"statusCode": status, "message": message, **extra})


def _message(err: dict) -> str:
    """pydantic's words, made plain where they would mislead."""
    field = err["loc"][-1] if err["loc"] else ""
    if field == "date" and err["type"] in (
        "less_than_equal",
        "greater_than_equal",
        "date_parsing",
        "date_type",
        "date_from_datetime_parsing",
    ):
        return DATE_MESSAGE.removeprefix("date ")
    if err["type"] == "float_type":
        return "must be a JSON number (not a string or a boolean)"
    return err.get("msg", "").removeprefix("Value error, ")


@app.exception_handler(RequestValidationError)
def _invalid(e: RequestValidationError) -> Response:
    # Name the field and say what is wrong; never echo Python internals.
    detail = [{"loc": list(err["loc"]), "type": err["type"], "msg": _message(err)} for err in e.errors()]
    return _error(
        422,
        "invalid request: " + "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in detail),
        detail=detail,
    )


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported(e: RequestUnsupportedContentType) -> Response:
    return _error(415, "unsupported content-type: send the body as application/json")


@app.exception_handler(UnicodeDecodeError)
def _not_text(e: UnicodeDecodeError) -> Response:
    # API Gateway base64-encodes binary bodies; Powertools fails decoding them as text.
    return _error(400, f"body: not UTF-8 text (byte {e.start}); send the houses as application/json")


@app.exception_handler(NotFoundError)
def _not_found(e: NotFoundError) -> Response:
    return _error(404, str(e))


@app.exception_handler(NoModelError)
def _no_model(e: NoModelError) -> Response:
    return _error(503, str(e))


@app.exception_handler(StoreUnavailableError)
def _store_unavailable(e: StoreUnavailableError) -> Response:
    return Response(
        503, content_types.APPLICATION_JSON, {"statusCode": 503, "message": str(e)}, headers={"Retry-After": "1"}
    )


@app.exception_handler(ClientError)
@app.exception_handler(BotoCoreError)
def _aws_error(e: Exception) -> Response:
    # Throttling, 5xx and network errors of S3/DynamoDB are the store's, and passing: 503, retry. Anything else
    # (AccessDenied, a bad request) is a bug here: let it surface as a 500 with its traceback in the logs.
    if not is_transient(e):
        raise e
    logger.warning("store unavailable", exc_info=e)
    return _store_unavailable(StoreUnavailableError("the model store is not answering: retry"))


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event, context):
    # The request id is the correlation id. Read directly: correlation_id_path's JMESPath search costs ~9 us a
    # call, as much as the feature engineering.
    logger.set_correlation_id(event.get("requestContext", {}).get("requestId"))
    # Every request, whatever its route: a traffic figure of our own, and no invocation without a metric (Powertools
    # warns "No application metrics to publish" on each one that has none).
    metrics.add_metric("Requests", MetricUnit.Count, 1)
    return _fast_predict(event) or app.resolve(event, context)
