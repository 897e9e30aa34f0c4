"""`python manage.py monthly_report --month YYYY-MM [--team NAME]`: (re)generates and
stores monthly statements from the ledger and prints their totals (or the CSV)."""
from django.core.management.base import BaseCommand, CommandError

from billing.months import BadMonth, last_closed_month, parse_month
from billing.reports import generate_statements, statement_csv, stored_statement
from tokenhub_portal.accounts.models import Team


class Command(BaseCommand):
    help = "Generate and store monthly statements from the ledger (default: last month, every active team)."

    def add_arguments(self, parser):
        parser.add_argument("--month", help="YYYY-MM (default: the last closed month)")
        parser.add_argument("--team", help="team name (default: every team with usage that month)")
        parser.add_argument("--csv", action="store_true", help="print each statement as CSV")

    def handle(self, *args, month=None, team=None, csv=False, **opts):
        try:
            target = parse_month(month) if month else last_closed_month()
        except BadMonth as exc:
            raise CommandError(str(exc)) from None
        team_obj = None
        if team:
            team_obj = Team.objects.filter(name=team).first()
            if team_obj is None:
                raise CommandError(f"no team named {team!r}")
        statements = generate_statements(target, team=team_obj)
        if not statements:
            self.stdout.write(f"{target:%Y-%m}: no usage, no statements")
        for row in statements:
            if csv:
                self.stdout.write(statement_csv(stored_statement(row.team, row.month)), ending="")
            else:
                self.stdout.write(f"{row.month:%Y-%m}  {row.team.name}  requests={row.requests}  "
                                  f"total=USD {row.total.normalize():f}")
