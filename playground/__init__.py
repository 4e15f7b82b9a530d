"""The browser playground (`nn-cli serve`): a Starlette app whose page draws what the
framework trains on the server. Needs the `serve` extra (starlette, uvicorn)."""

from playground.app import create_app

__all__ = ["create_app"]
