from django.contrib import admin

from .models import Charge, CreditEntry, Model, MonthlyStatement, Price, RequestRecord, UsageRollup


class PriceInline(admin.TabularInline):
    model = Price
    extra = 0
    ordering = ["-effective_from"]

    def has_change_permission(self, request, obj=None):
        return False  # price versions are immutable: add a new one with a later date


@admin.register(Model)
class ModelAdmin(admin.ModelAdmin):
    list_display = ["public_id", "tier", "upstream_id", "lifecycle", "successor", "enabled", "recommended"]
    list_filter = ["lifecycle", "enabled"]
    list_editable = ["enabled"]
    search_fields = ["public_id", "upstream_id", "tier"]
    inlines = [PriceInline]


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    list_display = ["model", "effective_from", "input_per_mtok", "output_per_mtok",
                    "cache_write_5m_multiplier", "cache_write_1h_multiplier", "cache_read_multiplier"]
    list_filter = ["model"]

    def has_change_permission(self, request, obj=None):
        return obj is None or not obj.charges.exists()


@admin.register(Charge)
class ChargeAdmin(admin.ModelAdmin):
    list_display = ["request", "team", "api_key", "model", "amount", "estimated", "occurred_at"]
    list_filter = ["team", "model", "estimated"]
    date_hierarchy = "occurred_at"
    list_select_related = ["request", "team", "api_key", "model"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(CreditEntry)
class CreditEntryAdmin(admin.ModelAdmin):
    list_display = ["team", "amount", "kind", "note", "created_by", "created"]
    list_filter = ["team", "kind"]
    autocomplete_fields = ["team"]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def has_change_permission(self, request, obj=None):
        return False  # a ledger: corrections are new adjustment entries


@admin.register(UsageRollup)
class UsageRollupAdmin(admin.ModelAdmin):
    list_display = ["hour", "team", "api_key", "model", "requests", "errors", "input_tokens", "output_tokens", "cost"]
    list_filter = ["team", "model"]
    date_hierarchy = "hour"
    list_select_related = ["team", "api_key", "model"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # derived data: recomputed from the ledger by billing.rollups


@admin.register(MonthlyStatement)
class MonthlyStatementAdmin(admin.ModelAdmin):
    list_display = ["month", "team", "requests", "total", "generated_at"]
    list_filter = ["month", "team"]
    readonly_fields = ["team", "month", "total", "requests", "data", "generated_at"]

    def has_add_permission(self, request):
        return False


@admin.register(RequestRecord)
class RequestRecordAdmin(admin.ModelAdmin):
    list_display = ["generation_id", "created", "team", "api_key", "requested_model", "status", "streamed",
                    "input_tokens", "output_tokens", "latency_ms", "ttft_ms"]
    list_filter = ["status", "streamed", "requested_model", "team", ("created", admin.DateFieldListFilter)]
    search_fields = ["generation_id", "upstream_request_id", "end_user"]
    date_hierarchy = "created"
    list_select_related = ["team", "api_key"]
    show_full_result_count = False  # COUNT(*) over millions of rows is the slow part

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
