"""The models that moved between apps (Team, Membership, Invitation and ApiKey to
`accounts`, RequestRecord to `billing`) kept their tables and rows: a database populated
at the old schema migrates forward with every row, key and foreign key intact."""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from billing.models import Model
from billing.seed import load_seed
from proxy.catalog import load_catalog

OLD_SCHEMA = [("tokenhub_portal", "0002_invitation"), ("proxy", "0001_initial"),
              ("billing", "0004_rollups_statements"), ("accounts", None), ("contenttypes", "0002_remove_content_type_name"),
              ("auth", "0012_alter_user_first_name_max_length")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state([t for t in targets if t[1] is not None]).apps


@pytest.mark.django_db(transaction=True)
def test_database_at_the_old_schema_migrates_forward_without_losing_rows():
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    old = _migrate(OLD_SCHEMA)
    try:
        User = old.get_model("auth", "User")
        Team = old.get_model("tokenhub_portal", "Team")
        ApiKey = old.get_model("proxy", "ApiKey")
        Record = old.get_model("proxy", "RequestRecord")
        Charge = old.get_model("billing", "Charge")
        Model = old.get_model("billing", "Model")
        ContentType = old.get_model("contenttypes", "ContentType")
        # As on a database that never saw the new apps (this one was set up at the latest schema).
        ContentType.objects.filter(app_label__in=["accounts", "billing"], model__in=["apikey", "requestrecord"]).delete()
        ContentType.objects.get_or_create(app_label="proxy", model="apikey")
        user = User.objects.create(username="old-owner")
        team = Team.objects.create(name="old-team", monthly_budget=Decimal("12.50"))
        old.get_model("tokenhub_portal", "Membership").objects.create(team=team, user=user, role="owner")
        key = ApiKey.objects.create(team=team, name="legacy", key_hash="a" * 64, prefix="th-legacy",
                                    allowed_models=["claude-sonnet-4-6"], monthly_limit=Decimal("5"))
        model = Model.objects.create(public_id="legacy-model", upstream_id="legacy-model", tier="Legacy")
        record = Record.objects.create(
            generation_id="chatcmpl-legacy", api_key=key, team=team, requested_model="claude-sonnet-4-6",
            model=model, status="success", http_status=200, input_tokens=11, cache_write_5m_tokens=2,
            cache_write_1h_tokens=3, cache_read_tokens=4, output_tokens=5,
            created=datetime(2026, 11, 1, tzinfo=UTC))
        Charge.objects.create(request=record, team=team, api_key=key, model=model, amount=Decimal("0.0001234567"),
                              occurred_at=record.created)
    finally:
        _migrate(latest)

    from django.contrib.contenttypes.models import ContentType as NewContentType

    from billing.models import Charge as NewCharge
    from billing.models import RequestRecord
    from tokenhub_portal.accounts.models import ApiKey as NewApiKey
    from tokenhub_portal.accounts.models import Membership
    from tokenhub_portal.accounts.models import Team as NewTeam

    team = NewTeam.objects.get(name="old-team")
    assert team.monthly_budget == Decimal("12.50")
    assert Membership.objects.get(team=team).user.username == "old-owner"
    key = NewApiKey.objects.get(key_hash="a" * 64)
    assert (key.team_id, key.name, key.allowed_models, key.monthly_limit) == (
        team.pk, "legacy", ["claude-sonnet-4-6"], Decimal("5.00"))
    record = RequestRecord.objects.get(generation_id="chatcmpl-legacy")
    assert (record.api_key_id, record.team_id) == (key.pk, team.pk)
    assert (record.input_tokens, record.cache_write_5m_tokens, record.cache_write_1h_tokens,
            record.cache_read_tokens, record.output_tokens) == (11, 2, 3, 4, 5)
    assert record.charge.amount == Decimal("0.0001234567")
    assert NewCharge.objects.get(request=record).api_key_id == key.pk
    assert NewContentType.objects.filter(app_label="accounts", model="apikey").exists()
    assert not NewContentType.objects.filter(app_label="proxy", model="apikey").exists()


@pytest.mark.django_db(transaction=True)
def test_the_thinking_flag_becomes_the_mode_each_model_takes():
    """0007: rows that think get the seed's form for their model (the 4.6+ models adaptive,
    Opus 4.7 too, which the flag had to leave off); unknown rows a budget; rows an operator
    switched off stay off."""
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    old = _migrate([("billing", "0006_requestrecord_api")])
    try:
        OldModel = old.get_model("billing", "Model")
        load_seed(OldModel, old.get_model("billing", "Price"))  # as migration 0003 does, on the flag
        assert OldModel.objects.get(public_id="claude-haiku-4-5").thinking
        OldModel.objects.filter(public_id="claude-opus-4-7").update(thinking=False)
        OldModel.objects.filter(public_id="claude-opus-4-5").update(thinking=False)
        OldModel.objects.create(public_id="custom-thinker", upstream_id="custom", tier="Custom", thinking=True)
        OldModel.objects.create(public_id="custom-plain", upstream_id="plain", tier="Custom", thinking=False)
    finally:
        _migrate(latest)

    modes = dict(Model.objects.values_list("public_id", "thinking_mode"))
    assert modes["claude-opus-4-7"] == modes["claude-opus-4-6"] == modes["claude-sonnet-4-6"] == "adaptive"
    assert modes["claude-haiku-4-5"] == modes["claude-sonnet-4-5"] == modes["custom-thinker"] == "enabled"
    assert modes["claude-opus-4-5"] == modes["claude-3-5-haiku-latest"] == modes["custom-plain"] == "none"


@pytest.mark.django_db
def test_the_catalog_carries_each_models_thinking_mode_to_the_translator():
    catalog = load_catalog()
    mode = {name: catalog.resolve(name).spec.thinking_mode
            for name in ("anthropic/claude-opus-4-7", "claude-sonnet-4-6", "claude-haiku-4-5", "claude-3-5-haiku-latest")}
    assert mode == {"anthropic/claude-opus-4-7": "adaptive", "claude-sonnet-4-6": "adaptive",
                    "claude-haiku-4-5": "enabled", "claude-3-5-haiku-latest": "none"}
