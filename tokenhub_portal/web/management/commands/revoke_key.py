from django.core.management.base import BaseCommand, CommandError

from tokenhub_portal.accounts.audit import audit_context
from tokenhub_portal.accounts.models import AuditEntry
from tokenhub_portal.accounts.services import KeyOperationError, find_key, revoke_key


class Command(BaseCommand):
    help = "Revoke an API key, given the full key or its display prefix. Every gateway process refuses it at once."

    def add_arguments(self, parser):
        parser.add_argument("key_or_prefix")

    def handle(self, *args, **opts):
        try:
            key = find_key(opts["key_or_prefix"].strip())
        except KeyOperationError as exc:
            raise CommandError(str(exc)) from None
        with audit_context(AuditEntry.Source.COMMAND, label="manage.py revoke_key"):
            revoke_key(key)
        self.stdout.write(f"Revoked {key.prefix}… ({key.name or 'unnamed'}) of team {key.team.name}")
