from django.contrib import admin
from django.template.response import TemplateResponse

from .keys import display_prefix, generate_key, hash_key
from .models import ApiKey, RequestRecord
from .services import revoke_key


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "name", "team", "created", "last_used", "revoked_at", "expires_at", "monthly_limit"]
    list_filter = ["team", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "name", "team__name"]
    readonly_fields = ["prefix", "created", "last_used", "revoked_at"]
    fields = ["team", "name", "prefix", "allowed_models", "rpm_limit", "tpm_limit", "monthly_limit",
              "expires_at", "created", "last_used", "revoked_at"]
    actions = ["revoke"]
    autocomplete_fields = ["team"]

    def save_model(self, request, obj, form, change):
        if not change:
            plaintext = generate_key()
            obj.key_hash, obj.prefix, obj.created_by = hash_key(plaintext), display_prefix(plaintext), request.user
            super().save_model(request, obj, form, change)
            request.tokenhub_new_key = plaintext  # shown once by response_add, never stored
            return
        super().save_model(request, obj, form, change)  # proxy.signals tells every process

    def response_add(self, request, obj, post_url_continue=None):
        """The new key on a page of its own, not in a flash message (those travel in a
        cookie or the session table)."""
        response = TemplateResponse(request, "admin/proxy/apikey/created.html", {
            **self.admin_site.each_context(request), "title": "API key created", "api_key": obj,
            "plaintext": request.tokenhub_new_key, "opts": self.model._meta,
        })
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        for key in queryset.filter(revoked_at__isnull=True):
            revoke_key(key)
        self.message_user(request, "Revoked.")


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
