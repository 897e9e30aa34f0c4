"""Request-log filters (django-filter): ?key=<hash>&model=&status=&user=&api=&from=&to=."""
from __future__ import annotations

import django_filters
from django.db.models import Q

from billing.models import RequestRecord


class RequestFilter(django_filters.FilterSet):
    key = django_filters.CharFilter(field_name="api_key__key_hash", help_text="Hash of the key.")
    model = django_filters.CharFilter(method="filter_model", help_text="Model id (canonical or as requested).")
    status = django_filters.ChoiceFilter(choices=RequestRecord.Status.choices)
    user = django_filters.CharFilter(field_name="end_user", help_text="The request's `user` field.")
    api = django_filters.ChoiceFilter(choices=RequestRecord.Api.choices)
    since = django_filters.IsoDateTimeFilter(field_name="created", lookup_expr="gte",
                                             help_text="From this time on (inclusive, ISO 8601).")
    until = django_filters.IsoDateTimeFilter(field_name="created", lookup_expr="lt",
                                             help_text="Before this time (exclusive, ISO 8601).")

    class Meta:
        model = RequestRecord
        fields = ["key", "model", "status", "user", "api"]

    def filter_model(self, queryset, name, value):
        return queryset.filter(Q(model__public_id=value) | Q(requested_model=value))


# The query parameters are `from` and `to`; `from` is a Python keyword, so the filters are
# declared as since/until and renamed here.
RequestFilter.base_filters["from"] = RequestFilter.base_filters.pop("since")
RequestFilter.base_filters["to"] = RequestFilter.base_filters.pop("until")
