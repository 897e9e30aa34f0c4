"""issue_key / revoke_key, including the exact newcomer command line on a fresh database."""
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core import serializers
from django.core.management import CommandError, call_command

from tokenhub_portal.accounts.keys import hash_key
from tokenhub_portal.accounts.models import ApiKey, Team

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.django_db


def run_command(*args) -> list[str]:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().splitlines()


def test_issue_key_prints_key_last_and_stores_only_its_hash(seeded):
    lines = run_command("issue_key", "--team", "acme", "--name", "ci", "--monthly-limit", "12.50",
                        "--rpm", "60", "--tpm", "5000", "--models", "claude-sonnet-4-6,anthropic/claude-haiku-4-5",
                        "--expires", "2030-01-31")
    key = lines[-1]
    assert key.startswith("th-") and len(key) >= 43 and key.strip() == key
    stored = ApiKey.objects.get(team__name="acme")
    assert stored.key_hash == hash_key(key) and stored.prefix == key[:11]
    assert stored.allowed_models == ["claude-sonnet-4-6", "claude-haiku-4-5"]
    assert str(stored.monthly_limit) == "12.50" and stored.rpm_limit == 60 and stored.tpm_limit == 5000
    assert stored.expires_at.date().isoformat() == "2030-01-31"
    dump = serializers.serialize("json", [*ApiKey.objects.all(), *Team.objects.all()])
    assert key not in dump and key[11:] not in dump


@pytest.mark.parametrize("args, message", [
    (["--models", "gpt-4o"], "unknown model"),
    (["--expires", "31/01/2030"], "YYYY-MM-DD"),
    (["--monthly-limit", "lots"], "number"),
    (["--rpm", "0"], "at least 1"),
])
def test_issue_key_rejects_bad_arguments(seeded, args, message):
    with pytest.raises(CommandError, match=message):
        run_command("issue_key", "--team", "acme", *args)


def test_revoke_key_by_prefix_and_by_full_key(seeded):
    first = run_command("issue_key", "--team", "acme")[-1]
    second = run_command("issue_key", "--team", "acme")[-1]
    run_command("revoke_key", first[:11])
    run_command("revoke_key", second)
    assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 2
    with pytest.raises(CommandError):
        run_command("revoke_key", "th-nothing")


def test_newcomer_command_line_on_a_fresh_database(tmp_path):
    """`migrate && issue_key --team acme --name ci` exactly as the README says."""
    db = tmp_path / "fresh.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "DJANGO_SETTINGS_MODULE": "tests.settings"}
    env.pop("REDIS_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    out = subprocess.run([sys.executable, "manage.py", "issue_key", "--team", "acme", "--name", "ci"],
                         cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    key = out.rstrip("\n").splitlines()[-1]
    assert key.startswith("th-") and len(key) >= 43
    raw = db.read_bytes()
    assert key.encode() not in raw and hash_key(key).encode() in raw


def test_admin_shows_a_new_key_once_without_a_flash_message(client, seeded, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw-123456-x")
    client.force_login(admin)
    team = Team.objects.create(name="admin-made")
    r = client.post("/admin/accounts/apikey/add/", {"team": team.pk, "kind": "inference", "name": "from-admin",
                                                    "allowed_models": "[]", "metadata": "{}"})
    assert r.status_code == 200 and "no-store" in r["Cache-Control"]
    plaintext = r.context["plaintext"]
    stored = ApiKey.objects.get(name="from-admin")
    assert stored.key_hash == hash_key(plaintext) and plaintext in r.content.decode()
    assert "messages" not in r.cookies  # never in a cookie
    assert plaintext not in client.get("/admin/accounts/apikey/").content.decode()
