from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from tokenhub_portal.accounts.models import ApiKey
from tokenhub_portal.accounts.services import KeyOperationError

from .. import selectors, services
from ..forms import KeyCreateForm
from .base import portal_view


@portal_view()
def keys(request):
    return render(request, "portal/keys.html", {"keys": selectors.team_keys(request.membership.team)})


@portal_view(manage=True)
def key_create(request):
    models = selectors.enabled_models()
    choices = [(m.public_id, f"{m.public_id}{' (recommended)' if m.recommended else ''}") for m in models]
    form = KeyCreateForm(request.POST or None, model_choices=choices)
    if request.method == "POST" and form.is_valid():
        try:
            issued = services.create_team_key(request.membership, **form.issue_kwargs())
        except KeyOperationError as exc:
            form.add_error("models", str(exc))
        else:
            default_model = next((m.public_id for m in models if m.recommended), models[0].public_id if models else "")
            response = render(request, "portal/key_created.html", {
                "api_key": issued.api_key, "plaintext": issued.plaintext,
                "base_url": request.build_absolute_uri("/api/v1"), "model": default_model,
            })
            response["Cache-Control"] = "no-store"  # the key is shown once: never cached
            return response
    return render(request, "portal/key_form.html", {"form": form, "welcome": request.GET.get("welcome")})


@require_POST
@portal_view(manage=True)
def key_revoke(request, pk: int):
    try:
        api_key = services.revoke_team_key(request.membership, pk)
    except ApiKey.DoesNotExist:
        raise Http404 from None
    messages.success(request, f"Key {api_key.prefix}… ({api_key.name or 'unnamed'}) revoked.")
    return redirect("keys")
