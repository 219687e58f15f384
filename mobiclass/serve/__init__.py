"""Serving a classifier over HTTP: API, micro-batcher and web page."""
from .app import create_app
from .batcher import MicroBatcher
from .server import serve
from .uploads import ServeSettings

__all__ = ["MicroBatcher", "ServeSettings", "create_app", "serve"]
