"""Serving a classifier over HTTP: API, micro-batcher and web page."""
from .app import ServeSettings, create_app
from .batcher import MicroBatcher
from .server import serve

__all__ = ["MicroBatcher", "ServeSettings", "create_app", "serve"]
