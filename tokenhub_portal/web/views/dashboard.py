from django.shortcuts import render

from .. import selectors
from .base import portal_view
from .charts import stacked_bars


@portal_view()
def dashboard(request):
    data = selectors.dashboard(request.membership.team)
    return render(request, "portal/dashboard.html", {
        "d": data, "chart": stacked_bars(data.days, data.series),
    })
