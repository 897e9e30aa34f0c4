"""`make run`: everything a newcomer needs in one command."""
import os
import secrets
import signal
import subprocess
import sys
import time

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from tokenhub_portal.accounts.audit import audit_context
from tokenhub_portal.accounts.models import ApiKey, AuditEntry, Membership, Team
from tokenhub_portal.web.services import issue_key

SIMULATOR_PORT = 8081


class Command(BaseCommand):
    help = "Migrate, seed a demo admin/team/key, and serve the gateway and portal (with the simulator if no ANTHROPIC_API_KEY)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=1)

    def handle(self, *args, **opts):
        call_command("migrate", verbosity=0)
        with audit_context(AuditEntry.Source.COMMAND, label="manage.py serve"):
            self.bootstrap_demo()
        env = dict(os.environ)
        simulator = None
        if not settings.ANTHROPIC_API_KEY:
            simulator = self.start_simulator()
            env["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{SIMULATOR_PORT}"
            env["ANTHROPIC_API_KEY"] = "simulator"
            banner = "!" * 78
            self.stdout.write(self.style.WARNING(
                f"{banner}\n!! No ANTHROPIC_API_KEY: serving against the built-in Anthropic SIMULATOR\n"
                f"!! at {env['ANTHROPIC_BASE_URL']}. Answers are fake. Set ANTHROPIC_API_KEY for Claude.\n{banner}"
            ))
        self.stdout.write(f"Gateway: http://{opts['host']}:{opts['port']}/api/v1   Admin: http://{opts['host']}:{opts['port']}/admin/")
        beat = None
        if not settings.REDIS_URL:
            # No broker: run Celery beat's schedule in this process (pricing, roll-ups, alerts,
            # statements), so dashboards, reports and alerts work with nothing else running.
            from tokenhub_portal.celery import app as celery_app
            from tokenhub_portal.web.beat import InProcessBeat

            beat = InProcessBeat(celery_app)
            beat.start()
            self.stdout.write(f"Periodic tasks run in-process: {', '.join(beat.schedule)}")
        else:
            self.stdout.write("REDIS_URL is set: run `celery -A tokenhub_portal worker --beat` for pricing, "
                              "roll-ups, alerts and statements.")
        command = [
            sys.executable, "-m", "tokenhub_portal.server", "--host", opts["host"], "--port", str(opts["port"]),
            "--workers", str(opts["workers"]),
            # the app ends its own requests after GRACEFUL_SECONDS; this bounds the portal's
            "--timeout-graceful-shutdown", str(settings.GRACEFUL_SECONDS + 5),
        ]
        server = subprocess.Popen(command, env=env)
        # `kill`/systemd/docker stop the server too, not only this process (Ctrl-C already
        # reaches the whole foreground process group).
        signal.signal(signal.SIGTERM, lambda *_: server.terminate())
        try:
            server.wait()
        except KeyboardInterrupt:
            server.wait()
        finally:
            if beat is not None:
                beat.stop()
            if simulator is not None:
                simulator.terminate()
                simulator.wait(timeout=10)

    def start_simulator(self) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "simulator", "--host", "127.0.0.1",
                                 "--port", str(SIMULATOR_PORT)])
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{SIMULATOR_PORT}/healthz", timeout=0.5)
                return proc
            except httpx.HTTPError:
                time.sleep(0.1)
        proc.terminate()
        raise SystemExit(f"The Anthropic simulator did not start on port {SIMULATOR_PORT}")

    def bootstrap_demo(self) -> None:
        User = get_user_model()
        if not User.objects.filter(is_superuser=True).exists():
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser("admin", "admin@example.com", password)
            self.stdout.write(self.style.SUCCESS(f"Created admin user: admin / {password}  (shown once)"))
        team, _ = Team.objects.get_or_create(name="demo")
        admin = User.objects.filter(is_superuser=True).order_by("pk").first()
        Membership.objects.get_or_create(team=team, user=admin, defaults={"role": Membership.Role.OWNER})
        existing = ApiKey.objects.filter(team=team, revoked_at__isnull=True).first()
        if existing:
            self.stdout.write(f"Demo team key exists ({existing.prefix}…). New one: python manage.py issue_key --team demo")
            return
        issued = issue_key(team, name="demo", created_by=admin)
        self.stdout.write(self.style.SUCCESS(f"Demo API key for team 'demo' (shown once):\n{issued.plaintext}"))
