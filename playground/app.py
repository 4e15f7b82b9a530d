"""The playground's web app: a static page, a JSON API and one event stream per tab.

    GET    /                           the page (static HTML, CSS and plain JavaScript)
    GET    /api/choices                every registered data set and component, the limits
    POST   /api/sessions               start a run from a configuration -> {"id": ...}
    GET    /api/sessions/{id}/events   server-sent events: "setup", then "frame"s
    POST   /api/sessions/{id}/control  {"action": "play" | "pause" | "step" | "reset"}
    GET    /api/sessions/{id}/model    the trained network as a model file
    DELETE /api/sessions/{id}          stop the run
    GET    /api/status                 how many runs are training

A run lives as long as its event stream: closing the tab ends the stream and stops the
run. Every refused request is a 4xx JSON object {"error": "one line"}.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from core.errors import NNError
from core.plugin.registry import Registry

from playground.config import LIMITS, PAGE_DEFAULTS, ConfigError, PlaygroundConfig, parse_config
from playground.session import FPS, Session, SessionStateError, playable_datasets

STATIC = Path(__file__).resolve().parent / "static"
UNCONNECTED_SECONDS = 15.0  # a run whose page never opens its stream is stopped after this
PING_SECONDS = 1.0  # an idle stream sends a comment this often, so a closed tab is noticed


class Sessions:
    """The runs now training, by id; bounded by LIMITS["max_sessions"]."""

    def __init__(self, registry: Registry, fps: float, max_epochs_per_second: float):
        self.registry, self.fps, self.max_eps = registry, fps, max_epochs_per_second
        self.runs: dict[str, Session] = {}
        self.created: dict[str, float] = {}
        self.streaming: set[str] = set()

    def start(self, config: PlaygroundConfig) -> str:
        self.reap()
        if len(self.runs) >= LIMITS["max_sessions"]:
            raise TooMany(
                f"{len(self.runs)} runs are training, the most this server takes; "
                f"close a playground tab and try again"
            )
        session = Session(config, self.registry, fps=self.fps,
                          max_epochs_per_second=self.max_eps)
        key = secrets.token_urlsafe(12)
        self.runs[key], self.created[key] = session, time.monotonic()
        return key

    def get(self, key: str) -> Session:
        if key not in self.runs:
            raise HTTPException(404, f"no run {key!r}: it was stopped (tab closed or server "
                                     f"restarted); press reset to start again")
        return self.runs[key]

    def stop(self, key: str) -> None:
        session = self.runs.pop(key, None)
        self.created.pop(key, None)
        self.streaming.discard(key)
        if session is not None:
            session.close()

    def stop_all(self) -> None:
        for key in list(self.runs):
            self.stop(key)

    def reap(self) -> None:
        """Stop the runs whose page never connected."""
        now = time.monotonic()
        for key in [k for k, t in self.created.items()
                    if k not in self.streaming and now - t > UNCONNECTED_SECONDS]:
            self.stop(key)


class TooMany(NNError):
    """Every run slot is taken (429)."""


def create_app(registry: Registry, *, fps: float = FPS,
               max_epochs_per_second: float = LIMITS["max_epochs_per_second"]) -> Starlette:
    """The playground app; `registry` decides every choice the page offers."""
    sessions = Sessions(registry, fps, max_epochs_per_second)
    datasets = playable_datasets(registry)  # what the page may pick, found once

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def choices(request: Request) -> Response:
        return JSONResponse(_choices(registry, datasets))

    async def status(request: Request) -> Response:
        return JSONResponse({"runs": len(sessions.runs), "limits": LIMITS})

    async def start(request: Request) -> Response:
        config = parse_config(await _json_body(request))
        if config.data not in datasets:
            raise ConfigError(f"unknown data set {config.data!r}; accepted (2-D classification): "
                              f"{', '.join(datasets)}")
        # Building a run draws its data and weights: off the event loop.
        key = await asyncio.to_thread(sessions.start, config)
        return JSONResponse({"id": key, "config": config.to_dict()}, status_code=201)

    async def control(request: Request) -> Response:
        session = sessions.get(request.path_params["key"])
        body = await _json_body(request)
        if not isinstance(body, dict) or set(body) != {"action"}:
            raise ConfigError('the body must be {"action": "play" | "pause" | "step" | "reset"}')
        session.command(body["action"] if isinstance(body["action"], str) else repr(body["action"]))
        return JSONResponse({"ok": True})

    async def model(request: Request) -> Response:
        session = sessions.get(request.path_params["key"])
        data = await asyncio.wrap_future(session.model_bytes())
        name = f"playground-{session.config.data}.safetensors"
        return Response(data, media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    async def stop(request: Request) -> Response:
        sessions.get(request.path_params["key"])
        sessions.stop(request.path_params["key"])
        return JSONResponse({"ok": True})

    async def events(request: Request) -> Response:
        key = request.path_params["key"]
        session = sessions.get(key)
        sessions.streaming.add(key)
        return StreamingResponse(_stream(key, session, sessions), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    routes = [
        Route("/", index),
        Route("/api/choices", choices),
        Route("/api/status", status),
        Route("/api/sessions", start, methods=["POST"]),
        Route("/api/sessions/{key}/control", control, methods=["POST"]),
        Route("/api/sessions/{key}/model", model),
        Route("/api/sessions/{key}/events", events),
        Route("/api/sessions/{key}", stop, methods=["DELETE"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = {NNError: _refused, HTTPException: _http_error, Exception: _crashed}
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=_stops(sessions))
    app.state.sessions = sessions
    return app


def _stops(sessions: Sessions):
    """The app's lifespan: reap unconnected runs while it serves; at shutdown, stop every run."""

    async def reaper() -> None:  # runs whose page never opened their stream (tab closed first)
        while True:
            await asyncio.sleep(UNCONNECTED_SECONDS / 3)
            sessions.reap()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        task = asyncio.create_task(reaper())
        yield
        task.cancel()
        sessions.stop_all()

    return lifespan


async def _stream(key: str, session: Session, sessions: Sessions):
    """The run's setup and frames as server-sent events, until the tab goes away."""
    sent_setup = sent_frame = 0
    last = 0.0
    try:
        while not session.closed:
            setup_id, setup, frame_id, frame = session.published
            if setup_id != sent_setup:
                yield f"event: setup\ndata: {setup}\n\n"
                sent_setup = setup_id
            if frame_id != sent_frame:
                yield f"event: frame\ndata: {frame}\n\n"
                sent_frame, last = frame_id, time.monotonic()
            elif time.monotonic() - last > PING_SECONDS:
                yield ": ping\n\n"
                last = time.monotonic()
            await asyncio.sleep(0.01)
    finally:  # the tab closed (or the run was stopped): stop training
        sessions.stop(key)


async def _json_body(request: Request) -> Any:
    size = int(request.headers.get("content-length") or 0)
    if size > LIMITS["max_body_bytes"]:
        raise HTTPException(413, f"the request body has {size} bytes; at most "
                                 f"{LIMITS['max_body_bytes']} are accepted")
    raw = await request.body()
    if len(raw) > LIMITS["max_body_bytes"]:
        raise HTTPException(413, f"the request body has {len(raw)} bytes; at most "
                                 f"{LIMITS['max_body_bytes']} are accepted")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"the request body is not valid JSON ({e})") from None


def _choices(registry: Registry, datasets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the page offers: every registered name by kind, with its summary."""
    def names(kind: str) -> list[dict[str, str]]:
        return [{"name": e.name, "summary": e.summary, "plugin": e.plugin}
                for e in registry.entries(kind)]

    return {
        "datasets": list(datasets.values()),
        "layers": names("layer"), "activations": names("activation"), "losses": names("loss"),
        "initializers": names("initializer"), "optimizers": names("optimizer"),
        "defaults": PAGE_DEFAULTS, "limits": LIMITS, "fps": FPS,
    }


async def _refused(request: Request, exc: Exception) -> Response:
    code = 409 if isinstance(exc, SessionStateError) else 429 if isinstance(exc, TooMany) else 400
    return JSONResponse({"error": str(exc)}, status_code=code)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


async def _crashed(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)
