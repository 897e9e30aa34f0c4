from datetime import datetime, time
from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError

from billing.months import billing_tz
from tokenhub_portal.accounts.audit import audit_context
from tokenhub_portal.accounts.models import ApiKey, AuditEntry, Team
from tokenhub_portal.accounts.services import KeyOperationError
from tokenhub_portal.web.services import issue_key


class Command(BaseCommand):
    help = ("Create an API key for a team (creating the team if needed), a management key (--management) or an "
            "operator key (--operator). The key is printed alone on the last line.")

    def add_arguments(self, parser):
        parser.add_argument("--team")
        parser.add_argument("--name", default="")
        parser.add_argument("--management", action="store_true",
                            help="a management key: manages the team through the management API, cannot call models")
        parser.add_argument("--operator", action="store_true",
                            help="an operator key: a management key for every team (no --team)")
        parser.add_argument("--monthly-limit", help="USD per calendar month (or per --limit-reset period)")
        parser.add_argument("--limit-reset", choices=[c for c, _ in ApiKey.LimitReset.choices],
                            help="the period the spend limit applies to (default: the calendar month)")
        parser.add_argument("--rpm", type=int)
        parser.add_argument("--tpm", type=int)
        parser.add_argument("--models", help="comma-separated allow-list of model ids")
        parser.add_argument("--expires", help="YYYY-MM-DD (the key stops working at the start of that day)")

    def handle(self, *args, **opts):
        if opts["operator"] == bool(opts["team"]):
            raise CommandError("give --team NAME, or --operator for a key of every team (not both)")
        limit = None
        if opts["monthly_limit"] is not None:
            try:
                limit = Decimal(opts["monthly_limit"])
            except InvalidOperation:
                raise CommandError("--monthly-limit must be a number of USD") from None
            if not limit.is_finite() or limit < 0:
                raise CommandError("--monthly-limit must be zero or more")
        for flag in ("rpm", "tpm"):
            if opts[flag] is not None and opts[flag] < 1:
                raise CommandError(f"--{flag} must be at least 1")
        expires = None
        if opts["expires"]:
            try:
                day = datetime.strptime(opts["expires"], "%Y-%m-%d").date()
            except ValueError:
                raise CommandError("--expires must be YYYY-MM-DD") from None
            expires = datetime.combine(day, time.min, tzinfo=billing_tz())
        management = opts["management"] or opts["operator"]
        if management and (limit is not None or opts["limit_reset"] or opts["rpm"] or opts["tpm"] or opts["models"]):
            raise CommandError("management keys cannot call models: limits, rates and models do not apply")
        models = [m.strip() for m in (opts["models"] or "").split(",") if m.strip()]
        with audit_context(AuditEntry.Source.COMMAND, label="manage.py issue_key"):
            team, created = (None, False) if opts["operator"] else Team.objects.get_or_create(name=opts["team"])
            try:
                issued = issue_key(
                    team, name=opts["name"], monthly_limit=limit, limit_reset=opts["limit_reset"], rpm=opts["rpm"],
                    tpm=opts["tpm"], models=models, expires_at=expires,
                    kind=ApiKey.Kind.MANAGEMENT if management else ApiKey.Kind.INFERENCE,
                )
            except KeyOperationError as exc:
                raise CommandError(str(exc)) from None
        if created:
            self.stdout.write(f"Created team {team.name}")
        if opts["operator"]:
            what = "Operator key (management, every team)"
        else:
            what = f"{'Management key' if management else 'Key'} for team {team.name}"
        self.stdout.write(f"{what}: {issued.api_key.prefix}…. It is shown only once:")
        self.stdout.write(issued.plaintext)
