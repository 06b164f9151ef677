"""The FastAPI application: routes, the real-time WebSocket, the web page, and the error mapping
that turns every failure into a clear OpenAI-style error body instead of a crash or a bare 500."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from stepaudio import __version__
from stepaudio.errors import AudioError, ModelNotFound, RequestError, StepAudioError, SynthesisFailed
from stepaudio.serve.models import Models
from stepaudio.serve.realtime import SessionSlots, serve_realtime
from stepaudio.serve.routes import public, router
from stepaudio.serve.security import BodyLimit, RequestGuard, error_body
from stepaudio.serve.settings import ServeSettings
from stepaudio.serve.workers import ServerBusy

log = logging.getLogger("stepaudio.serve")
BUSY_RETRY_SECONDS = 5  # the Retry-After of a 503 for a full queue


def create_app(models: Models, settings: ServeSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        models.close()

    app = FastAPI(title="stepaudio", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.models = models
    app.state.settings = settings
    app.state.slots = SessionSlots(settings.limits.max_sessions)
    app.include_router(public)
    app.include_router(router)

    @app.websocket("/v1/realtime")
    async def realtime(websocket: WebSocket) -> None:
        await serve_realtime(websocket, models.realtime, settings, app.state.slots)

    @app.get("/", include_in_schema=False)
    async def page() -> RedirectResponse:
        return RedirectResponse("/static/index.html")

    app.mount("/static", StaticFiles(packages=[("stepaudio.serve", "static")]), name="static")
    _add_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Speech-Engine"],  # which engine spoke (routes.ENGINE_HEADER)
        )
    app.add_middleware(BodyLimit, max_bytes=settings.limits.max_upload_bytes)
    app.add_middleware(RequestGuard, allowed_hosts=settings.allowed_hosts, cors_origins=settings.cors_origins)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    def error(status: int, message: str, kind: str, code: str, param: str | None = None, **headers) -> JSONResponse:
        return JSONResponse(error_body(message, kind, code, param), status_code=status, headers=headers or None)

    @app.exception_handler(StepAudioError)
    async def bad_request(request: Request, exc: StepAudioError) -> JSONResponse:
        if isinstance(exc, ModelNotFound):
            return error(404, str(exc), "invalid_request_error", "model_not_found")
        if isinstance(exc, ServerBusy):
            return error(503, str(exc), "server_error", "server_busy", **{"Retry-After": str(BUSY_RETRY_SECONDS)})
        if isinstance(exc, SynthesisFailed):
            return error(500, str(exc), "server_error", "synthesis_failed")
        if isinstance(exc, RequestError):
            return error(400, str(exc), "invalid_request_error", exc.code, exc.param)
        return error(
            400, str(exc), "invalid_request_error", "invalid_audio" if isinstance(exc, AudioError) else "invalid_value"
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [".".join(map(str, e["loc"][1:])) or "body" for e in exc.errors()]
        problems = "; ".join(f"{field}: {e['msg']}" for field, e in zip(fields, exc.errors(), strict=True))
        return error(400, f"bad request: {problems}", "invalid_request_error", "invalid_request", fields[0])

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = "authentication_error" if exc.status_code == 401 else "invalid_request_error"
        return error(exc.status_code, str(exc.detail), kind, "invalid_api_key" if exc.status_code == 401 else "error")

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error(
            500, f"the server failed on {request.url.path}: {type(exc).__name__}", "server_error", "server_error"
        )
