from django.contrib import admin
from django.template.response import TemplateResponse

from .keys import display_prefix, generate_key, hash_key
from .models import ApiKey, AuditEntry, Invitation, Membership, Team
from .services import revoke_key


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "monthly_budget", "prepaid", "suspended", "created"]
    list_filter = ["suspended", "prepaid"]
    search_fields = ["name"]
    inlines = [MembershipInline]
    fields = ["name", "monthly_budget", "prepaid", "suspended", "alert_thresholds", "webhook_url", "created"]
    # The webhook URL is set in the portal or the API, which show its new secret once.
    readonly_fields = ["webhook_url", "created"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "role", "created"]
    list_filter = ["role", "team"]
    autocomplete_fields = ["user", "team"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "team", "role", "invited_by", "created", "expires_at", "accepted_at", "revoked_at"]
    list_filter = ["role", "team"]
    search_fields = ["email", "team__name"]
    readonly_fields = ["created", "accepted_at", "accepted_by"]
    exclude = ["token"]  # the link is a secret: staff invite from the portal

    def has_add_permission(self, request):
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "name", "team", "kind", "created", "last_used", "disabled", "revoked_at", "expires_at",
                    "monthly_limit", "limit_reset"]
    list_filter = ["kind", "disabled", "team", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "name", "team__name"]
    readonly_fields = ["prefix", "created", "updated", "last_used", "revoked_at"]
    fields = ["team", "kind", "name", "prefix", "disabled", "allowed_models", "rpm_limit", "tpm_limit",
              "monthly_limit", "limit_reset", "metadata", "expires_at", "created", "updated", "last_used", "revoked_at"]
    actions = ["revoke"]
    autocomplete_fields = ["team"]

    def save_model(self, request, obj, form, change):
        if not change:
            plaintext = generate_key()
            obj.key_hash, obj.prefix, obj.created_by = hash_key(plaintext), display_prefix(plaintext), request.user
            super().save_model(request, obj, form, change)
            request.tokenhub_new_key = plaintext  # shown once by response_add, never stored
            return
        super().save_model(request, obj, form, change)  # the gateway's signal handlers tell every process

    def response_add(self, request, obj, post_url_continue=None):
        """The new key on a page of its own, not in a flash message (those travel in a
        cookie or the session table)."""
        response = TemplateResponse(request, "admin/accounts/apikey/created.html", {
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


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["created", "actor_label", "source", "action", "target", "team", "ip"]
    list_filter = ["source", "action", "team"]
    search_fields = ["actor_label", "target", "action", "team__name"]
    date_hierarchy = "created"
    list_select_related = ["team"]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
