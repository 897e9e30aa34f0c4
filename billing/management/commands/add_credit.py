from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError

from billing.selectors import credit_balance
from billing.services import add_credit
from tokenhub_portal.accounts.audit import audit_context
from tokenhub_portal.accounts.models import AuditEntry, Team


class Command(BaseCommand):
    help = "Top up (or, with a negative amount, adjust) a team's prepaid credit balance."

    def add_arguments(self, parser):
        parser.add_argument("--team", required=True)
        parser.add_argument("--amount", required=True, help="USD; negative for an adjustment")
        parser.add_argument("--note", default="")
        parser.add_argument("--prepaid", action="store_true", help="also switch the team to prepaid billing")

    def handle(self, *args, **opts):
        try:
            amount = Decimal(opts["amount"])
        except InvalidOperation:
            raise CommandError("--amount must be a number of USD") from None
        team = Team.objects.filter(name=opts["team"]).first()
        if team is None:
            raise CommandError(f"no team named {opts['team']!r}")
        with audit_context(AuditEntry.Source.COMMAND, label="manage.py add_credit"):
            try:
                add_credit(team, amount, note=opts["note"])
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            if opts["prepaid"] and not team.prepaid:
                team.prepaid = True
                team.save(update_fields=["prepaid"])
        balance = credit_balance(team.pk)
        self.stdout.write(f"Team {team.name}: {amount:+} USD; balance now {balance.normalize():f} USD"
                          + ("" if team.prepaid else " (team is not prepaid: use --prepaid to enforce it)"))
