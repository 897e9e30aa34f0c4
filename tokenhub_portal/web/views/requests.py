from django.http import Http404
from django.shortcuts import render

from .. import selectors
from ..forms import RequestFilterForm
from .base import portal_view


@portal_view()
def request_log(request):
    team = request.membership.team
    models = [(m.public_id, m.public_id) for m in selectors.enabled_models()]
    form = RequestFilterForm(request.GET or None, team=team, model_choices=models)
    page = selectors.request_log(team, **form.filters(), cursor=request.GET.get("cursor", ""))
    query = request.GET.copy()
    query.pop("cursor", None)
    first_query = query.urlencode()
    next_query = None
    if page.next_cursor:
        query["cursor"] = page.next_cursor
        next_query = query.urlencode()
    return render(request, "portal/requests.html", {
        "form": form, "page": page, "next_query": next_query, "first_query": first_query,
        "paged": bool(request.GET.get("cursor")),
    })


@portal_view()
def request_detail(request, generation_id: str):
    found = selectors.request_detail(request.membership.team, generation_id)
    if found is None:
        raise Http404("No such request in this team.")
    record, charge = found
    return render(request, "portal/request_detail.html", {"r": record, "charge": charge})
