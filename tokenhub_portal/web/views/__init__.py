"""The portal's pages. Thin: resolve the caller's team membership (never a team id from
the client), validate input with forms, call services/selectors, render."""
from . import operator  # noqa: F401
from .accounts import (  # noqa: F401
    invite_accept,
    invite_revoke,
    no_team,
    signup,
    team,
    team_alerts,
    team_audit,
    team_create,
    team_invite,
    team_switch,
    team_webhook_rotate,
)
from .dashboard import dashboard  # noqa: F401
from .keys import key_create, key_revoke, keys  # noqa: F401
from .reports import report, report_csv, reports, statement, statement_pdf  # noqa: F401
from .requests import request_detail, request_log  # noqa: F401
