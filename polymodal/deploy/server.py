"""The HTTP service (FastAPI) over an exported model: ``create_app(runtime, settings)``.

Routes: ``GET /`` (the web page), ``GET /health``, ``GET /metadata``, ``POST /predict``,
``POST /explain`` (``?output=NAME``: the class, label or target to attribute), plus ``/openapi.json``, ``/docs`` (Swagger UI) and ``/redoc``, whose scripts
and styles come from the installed ``fastapi-offline`` package rather than a CDN, so every page
works offline. Request bodies are described in
:mod:`polymodal.deploy.requests`; every error is JSON ``{"error": {"code", "message", "field"}}``
with a 4xx status; a query parameter a route does not take is one (FastAPI would ignore it). With a token set, ``/predict``, ``/explain`` and ``/metadata`` need
``Authorization: Bearer <token>``, and so do ``/openapi.json``, ``/docs`` and ``/redoc`` (the schema
names the classes, modalities and columns ``/metadata`` keeps to token holders). Requests a web page
on another site could make the service answer are refused (:mod:`polymodal.deploy.origins`: DNS
rebinding of a loopback service, cross-site posts). Predictions are micro-batched
(:mod:`polymodal.deploy.microbatch`).

(No ``from __future__ import annotations`` here: FastAPI reads the route signatures at run time,
and their types are imported inside :func:`create_app`, fastapi being an optional dependency.)
"""


import hmac
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import numpy as np

from polymodal import __version__
from polymodal.deploy.errors import RequestError
from polymodal.deploy.features.signatures import FILE_KINDS, accepted_types
from polymodal.deploy.microbatch import MicroBatcher
from polymodal.deploy.origins import SameSiteOnly, is_loopback
from polymodal.deploy.requests import RequestParser, read_row
from polymodal.deploy.runtime import Runtime
from polymodal.deploy.settings import ServeSettings
from polymodal.deploy.tasks import task_json, task_metadata
from polymodal.errors import MissingDependencyError, SchemaMismatchError
from polymodal.utils.scores import explained_outputs, explained_quantity, explained_score, output_index
from polymodal.utils.suggest import did_you_mean

ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "object", "properties": {
    "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": ["string", "null"]}}}}}


def body_schemas(runtime: Runtime, settings: ServeSettings) -> dict[str, Any]:
    """OpenAPI request bodies (JSON and multipart) for this model's modalities."""
    json_props: dict[str, Any] = {}
    form_props: dict[str, Any] = {}
    for name, spec in runtime.meta["modalities"].items():
        kind = spec["kind"]
        if kind in FILE_KINDS:
            accept = ", ".join(accepted_types(kind))
            json_props[name] = {"type": "string", "format": "byte",
                                "description": f"{kind} file ({accept}), base64 (line breaks ignored; a 'data:<type>;"
                                               "base64,' prefix allowed); empty: the modality is missing"}
            if kind == "signal":  # or its samples inline (RequestParser.samples)
                numbers = {"type": "array", "items": {"type": "number"}}
                json_props[name] = {"anyOf": [json_props[name], numbers, {"type": "array", "items": numbers}],
                                    "description": json_props[name]["description"] + "; or the samples inline: "
                                    "a list of numbers, or one list per channel (laid out as a .npy array of "
                                    "that shape)"}
            form_props[name] = {"type": "string", "format": "binary",
                                "description": f"{kind} file ({accept}); an empty file: the modality is missing"}
        elif kind == "text":
            json_props[name] = form_props[name] = {"type": "string", "maxLength": settings.max_text_chars}
        else:
            columns = [*spec["columns"], *spec["categorical"]]
            json_props[name] = {"type": "object", "additionalProperties": False, "properties": {
                c: {"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "null"}]} for c in columns}}
            form_props.update({c: {"type": "string", "description": f"column of tabular modality '{name}'"}
                               for c in columns})
    return {"required": True, "content": {
        "application/json": {"schema": {"type": "object", "properties": json_props, "additionalProperties": False,
                                        "minProperties": 1}},
        "multipart/form-data": {"schema": {"type": "object", "properties": form_props}},
    }}


def output_parameter(runtime: Runtime) -> dict[str, Any]:
    """The OpenAPI description of ``/explain``'s ``output`` query parameter: the model's outputs by name."""
    task = runtime.meta["task"]
    what = {"classification": "a class (default: the predicted one)", "multilabel": "a label (default: the first)",
            "anomaly": "the anomaly score, the one output"}.get(task, "a target (default: the first)")
    return {"name": "output", "in": "query", "required": False,
            "description": f"the output whose score the contributions attribute: {what}",
            "schema": {"type": "string", "enum": [str(name) for name in runtime.meta["classes"]]}}


QUERY_PARAMETERS = ("output",)  # every query parameter a route of the service takes


def query_parameters(request: Any, route: str, allowed: Sequence[str] = ()) -> dict[str, str]:
    """A request's query parameters that ``route`` takes (``allowed``), each sent once. A
    parameter of another route (``output`` on ``/predict``) or a near miss of one (``ouptut``) is
    refused rather than ignored, so that a misplaced or misspelt option is not silently answered
    with the default; any other name (a client's cache-buster, ``?_=1712``) is ignored.

    Raises:
        RequestError: (422) a parameter ``route`` does not take that names or resembles one of
            the service's, or one sent twice.
    """
    found: dict[str, str] = {}
    for name in request.query_params:
        if name not in allowed:
            if name not in QUERY_PARAMETERS and not did_you_mean(name, QUERY_PARAMETERS):
                continue  # not one of ours: a cache-buster or a proxy's tag
            takes = f"takes only {list(allowed)}" if allowed else "takes none (the inputs go in the body)"
            if name == "output" and name not in allowed:
                takes += "; 'output' picks what POST /explain?output=NAME attributes"
            raise RequestError(f"unknown query parameter '{name}'{did_you_mean(name, allowed)}; {route} {takes}",
                               status=422, code="unknown_parameter", field=name)
        values = request.query_params.getlist(name)
        if len(values) != 1:
            raise RequestError(f"query parameter '{name}' was sent {len(values)} times; send it once", status=422,
                               code="duplicate_parameter", field=name)
        found[name] = values[0]
    return found


def explained_choice(runtime: Runtime, output: str | None) -> int | None:
    """The index of the output ``/explain?output=`` names among the model's outputs (None: the default).

    Raises:
        RequestError: (422) no output has that name; the message lists them.
    """
    try:
        return output_index(output, runtime.meta["classes"], runtime.meta["task"])
    except SchemaMismatchError as err:
        raise RequestError(f"query parameter 'output': {err}", status=422, code="unknown_output",
                           field="output") from None


def prediction_json(runtime: Runtime, outputs: np.ndarray, row: dict[str, Any],
                    read_as: Sequence[str] = ()) -> dict[str, Any]:
    """The ``/predict`` answer for one sample's network ``outputs`` (``row``: the modalities it was sent),
    with ``warnings`` on how the body was read (``read_as``: an empty upload read as absent...) and
    how the row was (:meth:`~polymodal.deploy.runtime.Runtime.notes`). The main task answers at the
    top level (:func:`task_json`); a multi-task model adds ``tasks``: each further task's
    :func:`task_json` with its ``task`` (kind), by name."""
    meta = runtime.meta
    start, stop = meta["main_outputs"]
    scores = runtime.scores(outputs[None, start:stop])[0]
    read = [name for name in runtime.names if runtime.present(name, row)]  # a table of unreadable numbers is not
    out: dict[str, Any] = {"task": meta["task"], "modalities": read,
                           "absent": sorted(set(runtime.names) - set(read)),  # a feed that stopped, named
                           "warnings": [*read_as, *runtime.notes(row)]}
    if meta["task"] == "anomaly":  # no score (NaN, which JSON lacks): null, flagged, and why in a warning
        score = float(scores[0])
        held = np.asarray([sum(1 << i for i, name in enumerate(runtime.names) if name in read)])
        threshold = float(runtime.row_thresholds(held)[0])  # that of the modalities read
        out.update(score=score if np.isfinite(score) else None, flag=bool(runtime.flags(scores[None], held)[0]),
                   threshold=threshold if np.isfinite(threshold) else None)
        if np.isnan(score):
            reason = meta["anomaly"]["unscored_reason"] or "the scorer gave no score"
            out["warnings"].append(f"not scored: {reason}; flagged, as a row that cannot be checked")
        elif not np.isfinite(score):  # JSON has no infinity
            out["warnings"].append(f"the score is {score} (sent as null)")
    else:
        if not np.isfinite(outputs).all():  # argmax would call NaN probabilities the first class
            raise RequestError("the model's outputs for this input are not finite numbers (an input value too large "
                               "for the model once scaled, such as a signal sample of 1e38): nothing is predicted",
                               status=422, code="bad_input")
        out.update(task_json(runtime.task_entry(), scores))
    for name in runtime.further_tasks:  # a multi-task model: each further task's answer by name, the main task's above
        task_scores = runtime.scores(runtime.task_outputs(outputs[None], name), name)[0]
        out.setdefault("tasks", {})[name] = {"task": runtime.tasks[name]["task"], **task_json(runtime.tasks[name], task_scores)}
    return out


def explanation_json(runtime: Runtime, outputs: np.ndarray, row: dict[str, Any], phi: np.ndarray,
                     output: int | None = None, read_as: Sequence[str] = ()) -> dict[str, Any]:
    """The ``/explain`` answer: :func:`prediction_json` plus the explained score (``output``: the
    index of the explained output, None: the default, :func:`explained_outputs`), its base (the
    score with no modality; an anomaly detector's: the normal rows' mean score with the modalities
    sent, ``reference`` says which), each modality's contribution ``phi`` (Shapley values, in ``runtime.names``
    order; null, with the base, for an anomaly detector's row that got no score) and how they were
    computed (``shapley``: ``exact``, or ``sampled`` beyond 6 modalities: :meth:`Runtime.explain_plan`)."""
    meta, task = runtime.meta, runtime.meta["task"]
    out = prediction_json(runtime, outputs, row, read_as)
    start, stop = meta["main_outputs"]
    scores = runtime.scores(outputs[None, start:stop])
    pick = explained_outputs(task, scores, output, meta.get("threshold"))
    name = meta["classes"][int(pick[0])]
    score = float(explained_score(scores, pick)[0])
    out["explained"] = name if task == "classification" else str(name)
    out["explained_quantity"] = explained_quantity(task, name, predicted=task == "classification" and output is None)
    finite = bool(np.isfinite(score))
    out["score"] = score if finite else None
    out["base"] = score - float(phi.sum()) if finite else None
    plan = runtime.explain_plan()
    out["reference"] = "normal" if plan.exact and runtime.coalition_reference() is not None else "none"
    out["shapley"] = plan.method
    out["contributions"] = {n: float(v) if finite else None for n, v in zip(runtime.names, phi)}
    return out


def metadata_json(runtime: Runtime, settings: ServeSettings) -> dict[str, Any]:
    """The ``/metadata`` answer: task, classes, the outputs ``/explain?output=`` names, a multi-task
    model's further ``tasks`` (:func:`task_metadata`), modalities (with the fields and file types they
    accept), limits."""
    meta = runtime.meta
    modalities = {}
    for name, spec in meta["modalities"].items():
        entry: dict[str, Any] = {"kind": spec["kind"]}
        if spec["kind"] == "tabular":
            entry.update(columns=spec["columns"], categorical=spec["categorical"],
                         categories=spec["state"]["categories"])  # the values each categorical column learned
        elif spec["kind"] in FILE_KINDS:
            entry["accept"] = accepted_types(spec["kind"])
        prep = spec["preprocess"]
        if spec["kind"] == "audio":  # what the model reads of a clip: the rest is cut, a shorter one padded
            entry.update(sample_rate=prep["sample_rate"], max_seconds=prep["max_seconds"])
        elif spec["kind"] == "video":
            entry.update(frames=prep["frames"], sampling=prep["sampling"], size=prep["size"])
        elif spec["kind"] == "signal":
            entry["length"] = prep["length"]
        elif spec["kind"] == "image":
            entry["size"] = prep["size"]
        modalities[name] = entry
    return {"polymodal_version": __version__, "task": meta["task"], "target": meta["target"],
            "classes": meta["classes"] if meta["task"] in ("classification", "multilabel") else [],  # regression: targets
            "outputs": [str(name) for name in meta["classes"]],  # what POST /explain?output= takes
            **({"anomaly": meta["anomaly"]} if "anomaly" in meta else {}),  # the scorer and its flag threshold
            **({"threshold": meta["threshold"]} if "threshold" in meta else {}),  # a two-class decision threshold
            **({"tasks": {name: task_metadata(runtime.tasks[name]) for name in runtime.further_tasks}}
               if runtime.further_tasks else {}),  # a multi-task model's further tasks, as /predict's "tasks" answers them
            "modalities": modalities, "auth": settings.token is not None,
            "quantized": settings.quantized, "parity": meta.get("parity"),
            "limits": settings.model_dump(include={"max_request_bytes", "max_image_pixels", "max_audio_seconds", "max_video_frames",
                                                   "max_text_chars"})}


def behind(app: Any, paths: set[str | None], dependency: Any) -> None:
    """Register ``app``'s routes at ``paths`` again behind ``dependency`` (the bearer token's):
    FastAPI adds the schema route, and ``fastapi-offline`` the docs pages, as plain Starlette
    routes, which take no dependencies. The same endpoints answer, through the same check as
    ``/metadata``, so a request without the token gets the same 401 JSON."""
    for route in [r for r in app.router.routes if getattr(r, "path", None) in paths]:
        app.router.routes.remove(route)
        app.add_api_route(route.path, route.endpoint, methods=["GET", "HEAD"], include_in_schema=False,
                          dependencies=[dependency])


def create_app(runtime: Runtime, settings: ServeSettings | None = None) -> Any:
    """The FastAPI application serving ``runtime`` (see the module docstring)."""
    try:
        from fastapi import Depends, Request
        from fastapi.responses import HTMLResponse, JSONResponse
        from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
        from fastapi_offline import FastAPIOffline  # FastAPI with /docs and /redoc served from the package
        from starlette.concurrency import run_in_threadpool
        from starlette.exceptions import HTTPException
    except ImportError as err:  # the package that is missing, by its PyPI name
        package = (err.name or "fastapi").split(".")[0].replace("_", "-")
        raise MissingDependencyError(package, "polymodal serve", extra="serve") from None
    class AsciiJSONResponse(JSONResponse):
        """An error as ASCII JSON: what a client sent that UTF-8 cannot encode (a lone surrogate in
        a field name, which the message quotes) is escaped, where it made a 500."""

        def render(self, content: Any) -> bytes:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")

    settings = settings or ServeSettings()
    parser = RequestParser(runtime, settings)
    batcher = MicroBatcher(runtime.run, settings.max_batch, settings.max_wait_ms)
    meta = runtime.meta

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPIOffline(title="polymodal model", version=__version__, lifespan=lifespan,
                         description=f"{'An' if meta['task'][0] in 'aeiou' else 'A'} {meta['task']} model over {', '.join(runtime.names)} (polymodal {__version__}).")
    app.add_middleware(SameSiteOnly, loopback=is_loopback(settings.host))
    bearer = HTTPBearer(auto_error=False)

    def authorised(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if settings.token is None:
            return
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), settings.token.encode()):
            raise RequestError("missing or wrong bearer token; send 'Authorization: Bearer <token>'", status=401,
                               code="unauthorized")

    if settings.token is not None:
        behind(app, {app.openapi_url, "/docs", "/redoc"}, Depends(authorised))

    @app.exception_handler(RequestError)
    async def request_error(_: Request, err: RequestError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
        return AsciiJSONResponse(err.to_json(), status_code=err.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, err: HTTPException) -> JSONResponse:
        return AsciiJSONResponse({"error": {"code": "http_error", "message": str(err.detail), "field": None}},
                            status_code=err.status_code, headers=getattr(err, "headers", None))

    post = {"openapi_extra": {"requestBody": body_schemas(runtime, settings)},
            "responses": {s: {"description": d, "content": {"application/json": {"schema": ERROR_SCHEMA}}}
                          for s, d in ((400, "malformed body"), (401, "bearer token"), (413, "over a limit"),
                                       (415, "unsupported type"), (422, "unusable input or query parameter"))}}
    explain_extra = {"openapi_extra": {**post["openapi_extra"], "parameters": [output_parameter(runtime)]}}

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files("polymodal.deploy").joinpath("static/index.html").read_text("utf-8"))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, and how many requests and batches have run."""
        stats = batcher.stats
        return {"status": "ok", "requests": stats.requests, "batches": stats.batches, "largest_batch": stats.largest}

    @app.get("/metadata", dependencies=[Depends(authorised)])
    async def metadata() -> dict[str, Any]:
        """The model's task, classes and modalities (with the fields and file types they accept)."""
        return metadata_json(runtime, settings)

    @app.post("/predict", dependencies=[Depends(authorised)], **post)
    async def predict(request: Request) -> dict[str, Any]:
        """Predict one sample from any subset of the modalities (multipart or JSON)."""
        query_parameters(request, "POST /predict")
        body = await read_row(request, parser, settings)
        feeds = await run_in_threadpool(runtime.transform, [body.row])
        return prediction_json(runtime, await batcher.submit(feeds), body.row, body.warnings)

    @app.post("/explain", dependencies=[Depends(authorised)], **{**post, **explain_extra})
    async def explain(request: Request) -> dict[str, Any]:
        """The prediction plus each given modality's contribution (Shapley value) to the explained score:
        by default the predicted class's probability (classification), else the first label's probability, the
        first target's value or the anomaly score, as ``polymodal explain``; ``?output=NAME`` picks another
        class, label or target (an unknown name: 422 ``unknown_output``, listing them). ``explained`` is that
        output's name (a key of ``probabilities`` or ``prediction``), ``explained_quantity`` says it in words;
        ``base`` + the contributions = ``score``, ``base`` being the score with no modality (``reference:
        none``) or, for an anomaly detector, the normal rows' mean score with the modalities sent
        (``reference: normal``). ``shapley`` says how the values were computed, as ``polymodal explain``
        computes them: ``exact`` (over every coalition of modalities, up to 6) or ``sampled`` (beyond 6,
        from 64 orders sampled with a fixed seed: the same request gets the same answer)."""
        chosen = explained_choice(runtime, query_parameters(request, "POST /explain", ["output"]).get("output"))
        body = await read_row(request, parser, settings)
        feeds = await run_in_threadpool(runtime.transform, [body.row])
        outputs = await batcher.submit(feeds)
        name = None if chosen is None else meta["classes"][chosen]
        phi = (await run_in_threadpool(runtime.explain, [body.row], feeds, output=name))[0]
        return explanation_json(runtime, outputs, body.row, phi, chosen, body.warnings)

    return app
