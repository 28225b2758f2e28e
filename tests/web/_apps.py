"""Applications the WSGI and ASGI container tests serve: plain ones, Flask, Starlette.

The framework apps are built by functions, so that importing this module
needs neither framework (their tests skip when one is missing).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment

# -- WSGI ----------------------------------------------------------------------


def hello_wsgi(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    """The smallest WSGI app: one greeting, with its length."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, World!"]


def make_flask_app() -> Any:
    """A Flask app with a page, a form, a JSON echo, a stream and an error."""
    import flask

    app = flask.Flask("torsion_test_app")

    @app.get("/")
    def index() -> str:
        return "Hello from Flask"

    @app.post("/form")
    def form() -> dict[str, Any]:
        return {"name": flask.request.form["name"], "files": sorted(flask.request.files)}

    @app.post("/json")
    def echo_json() -> Any:
        return flask.jsonify(flask.request.get_json())

    @app.get("/stream")
    def stream() -> flask.Response:
        def lines() -> Iterator[str]:
            for index in range(100):
                yield f"line {index}\n"

        return flask.Response(lines(), mimetype="text/plain")

    @app.get("/where")
    def where() -> dict[str, Any]:
        return {
            "script_root": flask.request.script_root,
            "path": flask.request.path,
            "url": flask.request.url,
            "args": flask.request.args.to_dict(),
        }

    @app.get("/fail")
    def fail() -> str:
        raise RuntimeError("the view failed")

    return app


# -- ASGI ----------------------------------------------------------------------


async def hello_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The smallest ASGI app: one greeting (lifespan refused, as many apps do)."""
    if scope["type"] != "http":
        raise RuntimeError(f"only http, not {scope['type']}")
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"Hello, World!"})


def make_starlette_app() -> Any:
    """A Starlette app: routes, a path parameter, a stream, a form, lifespan state."""
    import contextlib

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import (
        JSONResponse,
        PlainTextResponse,
        StreamingResponse,
    )
    from starlette.routing import Route

    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        events.append("startup")
        yield {"greeting": "Hello from Starlette"}
        events.append("shutdown")

    async def index(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.state.greeting)

    async def item(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "id": request.path_params["item_id"],
                "q": request.query_params.get("q"),
                "root_path": request.scope["root_path"],
                "url": str(request.url),
            }
        )

    async def stream(request: Request) -> StreamingResponse:
        async def chunks() -> Any:
            for index in range(50):
                yield f"chunk {index}\n".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    async def form(request: Request) -> JSONResponse:
        async with request.form() as data:
            upload = data.get("upload")
            content = (
                await upload.read() if upload is not None and hasattr(upload, "read") else b""
            )
            return JSONResponse({"name": data.get("name"), "upload": content.decode()})

    async def echo(request: Request) -> PlainTextResponse:
        body = await request.body()
        return PlainTextResponse(f"{len(body)} {json.dumps(body[:10].decode())}")

    async def fail(request: Request) -> PlainTextResponse:
        raise RuntimeError("the endpoint failed")

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/items/{item_id:int}", item),
            Route("/stream", stream),
            Route("/form", form, methods=["POST"]),
            Route("/echo", echo, methods=["POST"]),
            Route("/fail", fail),
        ],
        lifespan=lifespan,
    )
    app.state.events = events
    return app
