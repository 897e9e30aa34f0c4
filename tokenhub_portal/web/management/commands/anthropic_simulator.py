from django.core.management.base import BaseCommand

from simulator import serve


class Command(BaseCommand):
    help = "Serve the built-in Anthropic Messages API simulator (see simulator/server.py for its markers)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8081)

    def handle(self, *args, **opts):
        serve(opts["host"], opts["port"])
