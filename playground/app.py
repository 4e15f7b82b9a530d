"""The playground's web app: a static page, a JSON API and one event stream per tab.

    GET    /                           the page (static HTML, CSS and plain JavaScript)
    GET    /api/choices                every registered data set and component, the limits
    POST   /api/sessions               start a run from a configuration -> {"id": ...}
    GET    /api/sessions/{id}/events   server-sent events: "setup", then "frame"s
    POST   /api/sessions/{id}/control  {"action": "play" | "pause" | "step" | "reset"}
    POST   /api/sessions/{id}/view     {"diagram": bool, "onestep": bool}: switch inside views
    POST   /api/sessions/{id}/speed    {"speed": epochs per frame}, while the run goes on
    POST   /api/sessions/{id}/probe    {"pixels": [...]}: a drawn image, whose class
                                       probabilities then come with every frame
    GET    /api/sessions/{id}/model    the trained network as a model file
    DELETE /api/sessions/{id}          stop the run
    GET    /api/status                 how many runs are training, and stopping

A run lives as long as its event stream (closing the tab ends the stream and stops the
run), and at most LIMITS["max_run_seconds"], or LIMITS["max_idle_seconds"] after its last
command. A run holds its slot until its threads have ended, not merely until it is told to
stop. Every refused request is a 4xx JSON object {"error": "one line"}. Who may send them
(this server's Host names, JSON bodies only) is playground/guards.py's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from core.errors import NNError
from core.plugin.registry import Registry

from playground.config import LIMITS, PAGE_DEFAULTS, ConfigError, PlaygroundConfig, parse_config
from playground.guards import JsonOnly, SecurityHeaders, allowed_hosts
from playground.inspection import parse_switches
from playground.session import FPS, Session, SessionStateError, playable_datasets
from playground.views import parse_probe

STATIC = Path(__file__).resolve().parent / "static"
UNCONNECTED_SECONDS = 15.0  # a run whose page never opens its stream is stopped after this
PING_SECONDS = 1.0  # an idle stream sends a comment this often, so a closed tab is noticed


class Sessions:
    """The runs now training, by id; bounded by LIMITS["max_sessions"].

    A slot is taken from the moment a request is accepted (`reserve`, on the event loop,
    before the run is built in a worker thread) until the run's threads have ended
    (`stopping` holds the runs told to stop whose threads still live).
    """

    def __init__(self, registry: Registry, fps: float, max_epochs_per_second: float):
        self.registry, self.fps, self.max_eps = registry, fps, max_epochs_per_second
        self.runs: dict[str, Session] = {}
        self.created: dict[str, float] = {}
        self.connected: set[str] = set()  # runs whose page opened their stream
        self.streams: dict[str, int] = {}  # open streams per run
        self.stopping: list[Session] = []
        self.reserved = 0
        self.lock = threading.RLock()  # the event loop, worker threads and tests all call in

    def taken(self) -> int:
        """Slots in use: runs training, runs being built, runs whose threads have not ended."""
        with self.lock:
            self.stopping = [s for s in self.stopping if s.alive()]
            return len(self.runs) + self.reserved + len(self.stopping)

    def reserve(self) -> None:
        """Take a slot for a run about to be built, or refuse (TooMany)."""
        with self.lock:
            self.reap()
            if self.taken() >= LIMITS["max_sessions"]:
                raise TooMany(
                    f"{self.taken()} runs are training or stopping, the most this server "
                    f"takes; close a playground tab and try again"
                )
            self.reserved += 1

    def start(self, config: PlaygroundConfig) -> str:
        """Build the run in the slot `reserve` took (in a worker thread: it draws data)."""
        try:
            session = Session(config, self.registry, fps=self.fps,
                              max_epochs_per_second=self.max_eps)
        except BaseException:
            with self.lock:
                self.reserved -= 1
            raise
        key = secrets.token_urlsafe(12)
        with self.lock:
            self.reserved -= 1
            self.runs[key], self.created[key] = session, time.monotonic()
        return key

    def get(self, key: str) -> Session:
        with self.lock:
            if key not in self.runs:
                raise HTTPException(404, f"no run {key!r}: it was stopped (tab closed or server "
                                         f"restarted); press reset to start again")
            return self.runs[key]

    def stop(self, key: str, reason: str | None = None) -> None:
        with self.lock:
            session = self.runs.pop(key, None)
            self.created.pop(key, None)
            self.connected.discard(key)
            if session is not None:
                session.close(reason)
                self.stopping.append(session)

    def stop_all(self) -> None:
        for key in list(self.runs):
            self.stop(key, "the server is shutting down")

    def reap(self) -> None:
        """Stop the runs whose page never connected, and those past the idle or lifetime limit."""
        now = time.monotonic()
        with self.lock:
            for key, born in list(self.created.items()):
                session = self.runs[key]
                if key not in self.connected and now - born > UNCONNECTED_SECONDS:
                    self.stop(key, "its page never connected")
                elif now - born > LIMITS["max_run_seconds"]:
                    self.stop(key, f"it reached the limit of {LIMITS['max_run_seconds']} s a run")
                elif now - session.last_command > LIMITS["max_idle_seconds"]:
                    self.stop(key, f"no command for {LIMITS['max_idle_seconds']} s")

class TooMany(NNError):
    """Every run slot is taken (429)."""


def create_app(registry: Registry, *, fps: float = FPS,
               max_epochs_per_second: float = LIMITS["max_epochs_per_second"],
               host: str | None = None) -> Starlette:
    """The playground app; `registry` decides every choice the page offers. It answers
    requests that name loopback or `host` (the address it was told to bind) only."""
    sessions = Sessions(registry, fps, max_epochs_per_second)
    datasets = playable_datasets(registry)  # what the page may pick, found once

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def choices(request: Request) -> Response:
        return JSONResponse(_choices(registry, datasets))

    async def status(request: Request) -> Response:
        stopping = sessions.taken() - len(sessions.runs) - sessions.reserved
        return JSONResponse({"runs": len(sessions.runs), "stopping": stopping, "limits": LIMITS})

    async def start(request: Request) -> Response:
        config = parse_config(await _json_body(request))
        if config.data not in datasets:
            raise ConfigError(f"unknown data set {config.data!r}; accepted (those the page draws): "
                              f"{', '.join(datasets)}")
        sessions.reserve()  # on the event loop: no two requests take the last slot
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

    async def view(request: Request) -> Response:  # inside views: no reset (inspection.py)
        session = sessions.get(request.path_params["key"])
        session.switch(parse_switches(await _json_body(request)))
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
        if sessions.streams.get(key, 0) >= LIMITS["max_streams_per_run"]:
            raise TooMany(f"run {key!r} already has {sessions.streams[key]} event streams, the "
                          f"most one run may have; open the page again for a run of its own")
        sessions.connected.add(key)
        sessions.streams[key] = sessions.streams.get(key, 0) + 1
        return StreamingResponse(_stream(key, session, sessions), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    routes = [
        Route("/", index),
        Route("/api/choices", choices),
        Route("/api/status", status),
        Route("/api/sessions", start, methods=["POST"]),
        Route("/api/sessions/{key}/control", control, methods=["POST"]),
        Route("/api/sessions/{key}/view", view, methods=["POST"]),
        Route("/api/sessions/{key}/model", model),
        *_training_control_routes(sessions),
        Route("/api/sessions/{key}/events", events),
        Route("/api/sessions/{key}", stop, methods=["DELETE"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = {NNError: _refused, HTTPException: _http_error, Exception: _crashed}
    guards = [Middleware(SecurityHeaders),  # outermost: refusals get the headers too
              Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host)),
              Middleware(JsonOnly)]
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=_stops(sessions),
                    middleware=guards)
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
    """The run's setup and frames as server-sent events, until the tab goes away; an
    "end" event says why, when the server stopped the run."""
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
        if session.ended:
            yield f"event: end\ndata: {json.dumps({'reason': session.ended_text()})}\n\n"
    finally:  # the tab closed (or the run was stopped): stop training
        sessions.streams[key] = sessions.streams.get(key, 1) - 1
        sessions.stop(key)


async def _json_body(request: Request) -> Any:
    """The body as JSON, read a chunk at a time: refused (413) as soon as it passes the
    limit, whether its length was declared or it comes chunked."""
    limit = LIMITS["max_body_bytes"]
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the request body has {declared} bytes; at most {limit} "
                                 f"are accepted", headers={"Connection": "close"})
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            # Connection: close, so that uvicorn stops reading the rest instead of draining it.
            raise HTTPException(413, f"the request body has more than {limit} bytes; at most "
                                     f"{limit} are accepted", headers={"Connection": "close"})
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"the request body is not valid JSON ({e})") from None
    except RecursionError:
        raise ConfigError("the request body is not a settings object (it nests too deeply)") from None


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
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _crashed(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)


# -- the training controls that change a run while it goes on (issue 25) -----------------


def _training_control_routes(sessions: Sessions) -> list[Route]:
    """The speed, and the image drawn on the page: neither resets the run."""

    async def speed(request: Request) -> Response:
        session = sessions.get(request.path_params["key"])
        body = await _json_body(request)
        if not isinstance(body, dict) or set(body) != {"speed"}:
            raise ConfigError('the body must be {"speed": epochs per frame}')
        config = parse_config({**session.config.to_dict(), "speed": body["speed"]})
        session.set_speed(config.speed)
        return JSONResponse({"ok": True, "speed": config.speed})

    async def probe(request: Request) -> Response:
        session = sessions.get(request.path_params["key"])
        body = await _json_body(request)
        run = session.run
        if run is None:
            raise SessionStateError(session.ended_text())
        session.set_probe(parse_probe(body, run.kind, run.image))
        return JSONResponse({"ok": True})

    return [Route("/api/sessions/{key}/speed", speed, methods=["POST"]),
            Route("/api/sessions/{key}/probe", probe, methods=["POST"])]
