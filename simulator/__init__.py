"""A faithful fake of Anthropic's Messages API for development, tests and benchmarks.

Not part of the gateway: nothing in `proxy`, `billing` or `tokenhub_portal` imports it
except the `anthropic_simulator` and `serve` commands. Its request markers are listed in
`simulator/server.py`."""
from .server import app, main, serve

__all__ = ["app", "main", "serve"]
