from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string

from billing import reports as billing_reports
from billing.months import BadMonth, current_month, parse_month

from .. import selectors
from .base import portal_view


def _month(text: str):
    try:
        month = parse_month(text)
    except BadMonth:
        raise Http404 from None
    if month > current_month():
        raise Http404("That month has not started.")
    return month


@portal_view()
def reports(request):
    team = request.membership.team
    return render(request, "portal/reports.html", {
        "months": selectors.monthly_totals(team), "current": current_month(),
    })


@portal_view()
def report(request, month: str):
    st = billing_reports.statement_for(request.membership.team, _month(month))
    return render(request, "portal/report.html", {"st": st})


@portal_view()
def report_csv(request, month: str):
    st = billing_reports.statement_for(request.membership.team, _month(month))
    response = HttpResponse(billing_reports.statement_csv(st), content_type="text/csv; charset=utf-8")
    safe_team = "".join(c if c.isalnum() or c in "-_" else "-" for c in st.team.name)
    response["Content-Disposition"] = f'attachment; filename="tokenhub-{safe_team}-{st.label}.csv"'
    return response


@portal_view()
def statement(request, month: str):
    st = billing_reports.statement_for(request.membership.team, _month(month))
    return render(request, "portal/statement.html", {"st": st})


def _no_fetch(url, *args, **kwargs):
    raise ValueError(f"statement PDFs load nothing from outside ({url})")


@portal_view()
def statement_pdf(request, month: str):
    """The printable statement as a PDF, rendered server-side by WeasyPrint when it is
    installed (optional dependency); otherwise the HTML statement prints to PDF."""
    st = billing_reports.statement_for(request.membership.team, _month(month))
    try:
        import weasyprint
    except ImportError:
        return render(request, "portal/statement.html", {"st": st, "pdf_unavailable": True}, status=501)
    html = render_to_string("portal/statement.html", {"st": st, "pdf": True}, request=request)
    pdf = weasyprint.HTML(string=html, base_url=request.build_absolute_uri("/"), url_fetcher=_no_fetch).write_pdf()
    response = HttpResponse(pdf, content_type="application/pdf")
    safe_team = "".join(c if c.isalnum() or c in "-_" else "-" for c in st.team.name)
    response["Content-Disposition"] = f'attachment; filename="tokenhub-{safe_team}-{st.label}.pdf"'
    return response
