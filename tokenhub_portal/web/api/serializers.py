"""Shapes of the management API. Keys follow OpenRouter's key object; money is a decimal
string in USD, exact; unknown request fields are refused by name (typos in CI or
Terraform should fail loudly, not be ignored)."""
from __future__ import annotations

from decimal import Decimal

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing.pricing import format_usd
from billing.reports import Line
from tokenhub_portal.accounts.models import ApiKey, Membership

MONEY_SCHEMA = {"type": "string", "format": "decimal", "pattern": r"^-?\d+(\.\d+)?$",
                "description": "USD as an exact decimal string"}


def money(value: Decimal | None) -> str | None:
    return None if value is None else format_usd(value)


@extend_schema_field(MONEY_SCHEMA)
class MoneyField(serializers.Field):
    """Read-only money: a plain decimal string, as exact as the ledger."""

    def __init__(self, **kwargs):
        kwargs.setdefault("read_only", True)
        super().__init__(**kwargs)

    def to_representation(self, value):
        return money(value)


class MoneyInput(serializers.DecimalField):
    """Money in: a decimal string (or a JSON number), never parsed through a float."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_digits", 14)
        kwargs.setdefault("decimal_places", 2)
        super().__init__(**kwargs)

    def to_representation(self, value):
        return money(value)


class Text(serializers.CharField):
    """A string, and only a string (DRF would turn 1 into "1")."""

    default_error_messages = {"invalid": "Must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, naming them."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data) - writable)
            if unknown:
                raise serializers.ValidationError({unknown[0]: [f"Unknown field '{unknown[0]}'."]}, code="unknown_field")
        return super().to_internal_value(data)


def validate_metadata(value: dict) -> dict:
    if len(value) > 50:
        raise serializers.ValidationError("At most 50 metadata keys.")
    for key in value:
        if not key or len(key) > 40 or not key.isprintable():
            raise serializers.ValidationError("Metadata keys are 1 to 40 printable characters.")
    return value


# --- keys --------------------------------------------------------------------------------

class KeySerializer(serializers.Serializer):
    """A key as the API shows it (never its secret). `usage` is the spend of the current
    limit period; `limit_remaining` is `limit` − `usage` (requests still running hold
    part of it in the gateway)."""

    hash = serializers.CharField(source="key_hash", read_only=True, help_text="The key's id (SHA-256 of the secret).")
    name = serializers.CharField(read_only=True)
    label = serializers.SerializerMethodField(help_text="Display prefix of the secret.")
    scope = serializers.ChoiceField(source="kind", choices=ApiKey.Kind.choices, read_only=True)
    team = serializers.IntegerField(source="team_id", read_only=True, allow_null=True,
                                    help_text="Null for operator keys.")
    disabled = serializers.BooleanField(read_only=True)
    limit = MoneyField(source="monthly_limit", allow_null=True, help_text="Spend limit per limit period (USD).")
    limit_reset = serializers.ChoiceField(choices=ApiKey.LimitReset.choices, read_only=True, allow_null=True,
                                          help_text="daily, weekly (from Monday) or monthly in the billing time "
                                                    "zone; null = the calendar month.")
    limit_remaining = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()
    usage_daily = serializers.SerializerMethodField()
    usage_weekly = serializers.SerializerMethodField()
    usage_monthly = serializers.SerializerMethodField()
    rpm = serializers.IntegerField(source="rpm_limit", read_only=True, allow_null=True)
    tpm = serializers.IntegerField(source="tpm_limit", read_only=True, allow_null=True)
    models = serializers.ListField(source="allowed_models", child=serializers.CharField(), read_only=True,
                                   help_text="Allowed model ids; empty = every enabled model.")
    metadata = serializers.DictField(child=serializers.CharField(), read_only=True)
    created_at = serializers.DateTimeField(source="created", read_only=True)
    updated_at = serializers.DateTimeField(source="updated", read_only=True)
    expires_at = serializers.DateTimeField(read_only=True, allow_null=True)
    last_used_at = serializers.DateTimeField(source="last_used", read_only=True, allow_null=True)
    creator = serializers.SerializerMethodField(help_text="Username of who created the key.")

    def _spend(self, key: ApiKey) -> dict:
        return self.context["spend"].get(key.pk) or {"daily": Decimal(0), "weekly": Decimal(0), "monthly": Decimal(0)}

    def get_label(self, key: ApiKey) -> str:
        return f"{key.prefix}…"

    @extend_schema_field(MONEY_SCHEMA)
    def get_usage(self, key: ApiKey) -> str:
        return money(self._spend(key)[key.limit_period])

    @extend_schema_field(MONEY_SCHEMA)
    def get_usage_daily(self, key: ApiKey) -> str:
        return money(self._spend(key)["daily"])

    @extend_schema_field(MONEY_SCHEMA)
    def get_usage_weekly(self, key: ApiKey) -> str:
        return money(self._spend(key)["weekly"])

    @extend_schema_field(MONEY_SCHEMA)
    def get_usage_monthly(self, key: ApiKey) -> str:
        return money(self._spend(key)["monthly"])

    @extend_schema_field({**MONEY_SCHEMA, "nullable": True})
    def get_limit_remaining(self, key: ApiKey) -> str | None:
        if key.monthly_limit is None:
            return None
        return money(max(key.monthly_limit - self._spend(key)[key.limit_period], Decimal(0)))

    @extend_schema_field({"type": "string", "nullable": True})
    def get_creator(self, key: ApiKey) -> str | None:
        return key.created_by.get_username() if key.created_by_id and key.created_by else None


class KeyListSerializer(serializers.Serializer):
    data = KeySerializer(many=True)
    total = serializers.IntegerField()
    offset = serializers.IntegerField()
    limit = serializers.IntegerField()


class KeyEnvelopeSerializer(serializers.Serializer):
    data = KeySerializer()


class KeyCreatedSerializer(serializers.Serializer):
    data = KeySerializer()
    key = serializers.CharField(help_text="The secret: shown this once, never again.")


class KeyDeletedSerializer(serializers.Serializer):
    deleted = serializers.BooleanField()
    hash = serializers.CharField()


class _KeyFields(StrictSerializer):
    name = Text(max_length=100)
    limit = MoneyInput(min_value=Decimal(0), allow_null=True, required=False,
                       help_text="USD per limit period; null = no limit.")
    limit_reset = serializers.ChoiceField(choices=ApiKey.LimitReset.choices, allow_null=True, required=False)
    expires_at = serializers.DateTimeField(allow_null=True, required=False)
    models = serializers.ListField(child=Text(max_length=100), max_length=100, required=False)
    rpm = serializers.IntegerField(min_value=1, max_value=2_000_000_000, allow_null=True, required=False)
    tpm = serializers.IntegerField(min_value=1, max_value=2_000_000_000, allow_null=True, required=False)
    metadata = serializers.DictField(child=Text(max_length=500, allow_blank=True), required=False,
                                     validators=[validate_metadata])

    def validate_expires_at(self, value):
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("Must be in the future.")
        return value

    def service_kwargs(self) -> dict:
        """The validated fields by the names the key services take."""
        renames = {"limit": "monthly_limit"}
        return {renames.get(k, k): v for k, v in self.validated_data.items() if k != "team"}


class KeyCreateSerializer(_KeyFields):
    team = serializers.IntegerField(required=False, min_value=1,
                                    help_text="Operators: the team to create the key for (a team's management key "
                                              "creates keys for its own team).")


class KeyUpdateSerializer(_KeyFields):
    name = Text(max_length=100, required=False)
    disabled = serializers.BooleanField(required=False)


# --- team and operators ----------------------------------------------------------------------

class MemberSerializer(serializers.Serializer):
    username = serializers.CharField(source="user.username")
    email = serializers.CharField(source="user.email")
    role = serializers.ChoiceField(choices=Membership.Role.choices)


class TeamSerializer(serializers.Serializer):
    """A team with its money: budget (per calendar month), prepaid balance, month spend."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    budget = MoneyField(source="monthly_budget", allow_null=True, help_text="Monthly budget (USD); null = none.")
    prepaid = serializers.BooleanField()
    credit_balance = MoneyField(allow_null=True, help_text="Prepaid balance (credits − spend); null unless prepaid.")
    month_spend = MoneyField()
    month_requests = serializers.IntegerField()
    keys = serializers.IntegerField(source="active_keys", help_text="Keys that are not revoked.")
    suspended = serializers.BooleanField(help_text="A suspended team's keys get 403 everywhere.")
    created_at = serializers.DateTimeField(source="created")


class TeamDetailSerializer(TeamSerializer):
    alert_thresholds = serializers.ListField(child=serializers.IntegerField(),
                                             help_text="Percentages of a budget or limit at which alerts are sent.")
    webhook_url = serializers.CharField(help_text="Where budget alerts are POSTed (signed); empty = none.")
    members = MemberSerializer(many=True, source="member_list")


class TeamEnvelopeSerializer(serializers.Serializer):
    data = TeamDetailSerializer()


class TeamListSerializer(serializers.Serializer):
    data = TeamSerializer(many=True)
    total = serializers.IntegerField()
    offset = serializers.IntegerField()
    limit = serializers.IntegerField()


class TeamPatchSerializer(StrictSerializer):
    budget = MoneyInput(min_value=Decimal(0), allow_null=True, required=False,
                        help_text="Monthly budget (USD); null removes it.")
    alert_thresholds = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=100),
                                             max_length=10, required=False,
                                             help_text="Whole percentages, e.g. [50, 80, 100].")
    webhook_url = Text(max_length=500, allow_blank=True, required=False,
                       help_text="https URL for signed budget alerts; \"\" removes it. Setting it returns a new "
                                 "webhook_secret, once.")


class TeamUpdatedSerializer(serializers.Serializer):
    data = TeamDetailSerializer()
    webhook_secret = serializers.CharField(allow_null=True, help_text="Only when webhook_url was just set: the "
                                           "signing secret (X-TokenHub-Signature), shown this once.")


class OperatorTeamPatchSerializer(StrictSerializer):
    """What operators may change on any team."""

    budget = MoneyInput(min_value=Decimal(0), allow_null=True, required=False,
                        help_text="Monthly budget (USD); null removes it.")
    suspended = serializers.BooleanField(required=False, help_text="Suspend (403 for every key) or resume.")


class CreditSerializer(StrictSerializer):
    amount = serializers.DecimalField(max_digits=24, decimal_places=10,
                                      help_text="USD; negative for an adjustment. Never zero.")
    note = Text(max_length=200, allow_blank=True, required=False, default="")

    def validate_amount(self, value: Decimal) -> Decimal:
        if value == 0:
            raise serializers.ValidationError("Must not be zero.")
        return value


class CreditCreatedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    amount = MoneyField()
    kind = serializers.CharField()
    note = serializers.CharField()
    created_at = serializers.DateTimeField()
    credit_balance = MoneyField(help_text="The team's prepaid balance after this entry.")


class CreditEnvelopeSerializer(serializers.Serializer):
    data = CreditCreatedSerializer()


# --- usage ------------------------------------------------------------------------------------

class RequestSerializer(serializers.Serializer):
    id = serializers.CharField(source="generation_id", help_text="The generation id (usable with /generation).")
    api = serializers.CharField()
    key = serializers.CharField(source="api_key.key_hash", help_text="Hash of the key that made the call.")
    key_name = serializers.CharField(source="api_key.name")
    model = serializers.CharField(source="requested_model")
    upstream_model = serializers.CharField()
    status = serializers.CharField()
    http_status = serializers.IntegerField()
    error_type = serializers.CharField()
    streamed = serializers.BooleanField()
    user = serializers.CharField(source="end_user")
    input_tokens = serializers.IntegerField()
    cache_write_5m_tokens = serializers.IntegerField()
    cache_write_1h_tokens = serializers.IntegerField()
    cache_read_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    output_estimated = serializers.BooleanField()
    cost = serializers.SerializerMethodField()
    cost_status = serializers.SerializerMethodField()
    latency_ms = serializers.IntegerField(allow_null=True)
    ttft_ms = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField(source="created")

    @extend_schema_field({**MONEY_SCHEMA, "nullable": True})
    def get_cost(self, record) -> str | None:
        charge = getattr(record, "charge", None)
        return money(charge.amount) if charge is not None else None

    @extend_schema_field({"type": "string", "enum": ["final", "pending"]})
    def get_cost_status(self, record) -> str:
        return "final" if getattr(record, "charge", None) is not None else "pending"


class RequestPageSerializer(serializers.Serializer):
    data = RequestSerializer(many=True)
    next = serializers.CharField(allow_null=True, help_text="URL of the next page; null on the last.")


class UsageQuerySerializer(StrictSerializer):
    group_by = serializers.ChoiceField(choices=["day", "model", "key", "user"], default="day")
    to = serializers.DateTimeField(required=False, help_text="End (exclusive); default now.")
    team = serializers.IntegerField(required=False, min_value=1, help_text="Operators: the team.")

    def validate(self, attrs):
        start, end = attrs.get("from"), attrs.get("to")
        if start is not None and end is not None and start >= end:
            raise serializers.ValidationError({"to": ["Must be after 'from'."]})
        return attrs


# `from` is a Python keyword: declared after the class.
UsageQuerySerializer._declared_fields["from"] = serializers.DateTimeField(
    required=False, help_text="Start (inclusive); default the start of this month.")


class UsageRowSerializer(serializers.Serializer):
    day = serializers.DateField(required=False)
    model = serializers.CharField(required=False, allow_null=True)
    key = serializers.CharField(required=False, allow_null=True)
    key_name = serializers.CharField(required=False)
    key_label = serializers.CharField(required=False)
    user = serializers.CharField(required=False)
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    cache_write_5m_tokens = serializers.IntegerField()
    cache_write_1h_tokens = serializers.IntegerField()
    cache_read_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost = MoneyField()


class UsageTotalSerializer(serializers.Serializer):
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    cache_write_5m_tokens = serializers.IntegerField()
    cache_write_1h_tokens = serializers.IntegerField()
    cache_read_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost = MoneyField()


class UsageSerializer(serializers.Serializer):
    group_by = serializers.CharField()
    start = serializers.DateTimeField(source="from")
    end = serializers.DateTimeField(source="to")
    data = UsageRowSerializer(many=True)
    total = UsageTotalSerializer()


class StatementLineSerializer(serializers.Serializer):
    model = serializers.CharField()
    key = serializers.CharField(help_text="Display prefix of the key (key lines).")
    key_name = serializers.CharField()
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    cache_write_5m_tokens = serializers.IntegerField()
    cache_write_1h_tokens = serializers.IntegerField()
    cache_read_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost = MoneyField()

    def to_representation(self, instance: Line) -> dict:
        """The line's token counts (billing.tokens.TokenCounts) as one column per class."""
        return super().to_representation({"model": instance.model, "key": instance.key, "key_name": instance.key_name,
                                          "requests": instance.requests, "errors": instance.errors,
                                          **instance.tokens.columns(), "cost": instance.cost})


class StatementSerializer(serializers.Serializer):
    team = serializers.CharField(source="team.name")
    month = serializers.CharField(source="label")
    period_start = serializers.SerializerMethodField()
    period_end = serializers.SerializerMethodField()
    final = serializers.BooleanField(help_text="True for a stored statement of a closed month.")
    by_model = StatementLineSerializer(many=True)
    by_key = StatementLineSerializer(many=True)
    total = StatementLineSerializer()

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_period_start(self, st) -> str:
        return st.period[0].isoformat()

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_period_end(self, st) -> str:
        return st.period[1].isoformat()


class StatementEnvelopeSerializer(serializers.Serializer):
    data = StatementSerializer()


class ErrorDetailSerializer(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.CharField()
    param = serializers.CharField(allow_null=True)
    code = serializers.CharField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()

