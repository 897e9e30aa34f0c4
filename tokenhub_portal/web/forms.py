from __future__ import annotations

from datetime import datetime, time
from decimal import Decimal

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm
from django.utils import timezone

from billing.models import RequestRecord
from billing.months import billing_tz
from tokenhub_portal.accounts.models import ApiKey, AuditEntry, Membership


class SignUpForm(UserCreationForm):
    email = forms.EmailField(required=True)
    team_name = forms.CharField(max_length=90, required=False, help_text="Leave empty to use “<username>'s team”.")

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def __init__(self, *args, invited: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if invited:
            del self.fields["team_name"]

    def clean_email(self):
        email = self.cleaned_data["email"]
        if get_user_model().objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("An account with this email already exists. Log in instead.")
        return email


class DateInput(forms.DateInput):
    input_type = "date"


class KeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"placeholder": "e.g. backend-prod",
                                                                        "autofocus": True}))
    kind = forms.ChoiceField(choices=ApiKey.Kind.choices, initial=ApiKey.Kind.INFERENCE, widget=forms.RadioSelect,
                             required=False,
                             label="Kind", help_text="A management key automates keys, budgets and usage through the "
                                                     "management API (/api/v1/keys…) and cannot call models.")
    monthly_limit = forms.DecimalField(required=False, min_value=Decimal("0.01"), max_digits=12, decimal_places=2,
                                       label="Spend limit (USD)", help_text="Empty = no per-key limit.")
    limit_reset = forms.ChoiceField(required=False, label="Limit resets",
                                    choices=[("", "Monthly (calendar month)"), ("daily", "Daily"),
                                             ("weekly", "Weekly (Monday)")],
                                    help_text="At midnight in the billing time zone.")
    rpm = forms.IntegerField(required=False, min_value=1, label="Requests / minute")
    tpm = forms.IntegerField(required=False, min_value=1, label="Tokens / minute")
    models = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                       label="Allowed models", help_text="None ticked = every enabled model.")
    expires = forms.DateField(required=False, widget=DateInput, label="Expires on",
                              help_text="The key stops working at the start of this day.")

    def __init__(self, *args, model_choices: list[tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["models"].choices = model_choices

    def clean_expires(self):
        day = self.cleaned_data.get("expires")
        if day is None:
            return None
        when = datetime.combine(day, time.min, tzinfo=billing_tz())
        if when <= timezone.now():
            raise forms.ValidationError("Pick a day in the future.")
        return when

    def clean(self):
        d = super().clean()
        if d.get("kind") == ApiKey.Kind.MANAGEMENT and any(d.get(f) for f in ("monthly_limit", "rpm", "tpm", "models")):
            raise forms.ValidationError("A management key cannot call models: leave the limits and models empty.")
        return d

    def issue_kwargs(self) -> dict:
        d = self.cleaned_data
        return {"name": d["name"], "kind": d["kind"] or ApiKey.Kind.INFERENCE, "monthly_limit": d["monthly_limit"],
                "limit_reset": d["limit_reset"] or None, "rpm": d["rpm"], "tpm": d["tpm"], "models": d["models"],
                "expires_at": d["expires"]}


class InviteForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=[(Membership.Role.MEMBER, "Member"), (Membership.Role.ADMIN, "Admin")])

    def __init__(self, *args, inviter_role: str, **kwargs):
        super().__init__(*args, **kwargs)
        if inviter_role != Membership.Role.OWNER:
            self.fields["role"].choices = [(Membership.Role.MEMBER, "Member")]


class TeamForm(forms.Form):
    name = forms.CharField(max_length=90)


class RequestFilterForm(forms.Form):
    key = forms.ModelChoiceField(queryset=ApiKey.objects.none(), required=False, empty_label="All keys")
    model = forms.ChoiceField(required=False)
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *RequestRecord.Status.choices])
    api = forms.ChoiceField(required=False, label="API", choices=[("", "Any API"), *RequestRecord.Api.choices])
    user = forms.CharField(required=False, max_length=256, label="End user",
                           widget=forms.TextInput(attrs={"placeholder": "the request's user field"}))
    date_from = forms.DateField(required=False, widget=DateInput, label="From")
    date_to = forms.DateField(required=False, widget=DateInput, label="To")

    def __init__(self, *args, team, model_choices, **kwargs):
        super().__init__(*args, **kwargs)
        # Only the team's own keys are valid choices: another team's key id fails validation.
        self.fields["key"].queryset = ApiKey.objects.filter(team=team)
        self.fields["model"].choices = [("", "All models"), *model_choices]

    def filters(self) -> dict:
        if not self.is_valid():
            return {}
        d = self.cleaned_data
        return {"api_key": d["key"], "model": d["model"], "status": d["status"], "api": d["api"],
                "end_user": d["user"].strip(), "date_from": d["date_from"], "date_to": d["date_to"]}


class AlertSettingsForm(forms.Form):
    """A team's budget-alert thresholds and webhook (owners/admins)."""

    thresholds = forms.CharField(max_length=100, required=False, label="Alert at (% of a limit)",
                                 help_text="Comma-separated percentages, e.g. 80, 100. Empty = no alerts.")
    webhook_url = forms.URLField(max_length=500, required=False, assume_scheme="https", label="Webhook URL",
                                 help_text="Alerts are also POSTed here, signed (X-TokenHub-Signature). Empty = e-mail only.")

    def clean_thresholds(self):
        from tokenhub_portal.accounts.services import clean_thresholds

        parts = [p for p in self.cleaned_data["thresholds"].replace(";", ",").split(",") if p.strip()]
        try:
            return clean_thresholds(parts)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


class CreditForm(forms.Form):
    amount = forms.DecimalField(max_digits=14, decimal_places=2, label="Amount (USD)",
                                help_text="Negative for a correction.")
    note = forms.CharField(max_length=200, required=False)

    def clean_amount(self):
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("Enter a non-zero amount.")
        return amount


class BudgetForm(forms.Form):
    monthly_budget = forms.DecimalField(required=False, min_value=Decimal(0), max_digits=12, decimal_places=2,
                                        label="Monthly budget (USD)", help_text="Empty = no budget.")
    prepaid = forms.BooleanField(required=False, label="Prepaid (refuse calls once the credit is spent)")


class TeamSearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=100, label="Search teams",
                        widget=forms.TextInput(attrs={"placeholder": "team name", "aria-label": "Search teams"}))


class AuditFilterForm(forms.Form):
    action = forms.CharField(required=False, max_length=40)
    source = forms.ChoiceField(required=False, choices=[("", "Any source"), *AuditEntry.Source.choices])
