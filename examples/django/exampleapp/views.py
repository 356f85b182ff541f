from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render

from .tollgate import error, report_usage, require_feature, require_user


def healthz(request):
    return HttpResponse("ok", content_type="text/plain")


def home(request):
    return render(request, "home.html")


@require_feature("reports")
def reports(request):
    """A feature-gated page: tollgate's route requires the reports feature;
    the exports link shows only to customers whose plan has exports."""
    return render(request, "reports.html", {"exports": "exports" in request.tollgate.features})


@require_feature("exports")
def export_csv(request):
    return HttpResponse("day,calls\n2024-01-01,42\n", content_type="text/csv")


def bounded_int(value, low, high):
    if value is None:
        return low
    try:
        n = int(value)
    except ValueError:
        return None
    return n if low <= n <= high else None


@require_user
def generate(request):
    """Metered: one unit per generated row, reported in X-Tollgate-Usage."""
    rows = bounded_int(request.GET.get("rows"), 1, 1000)
    if rows is None:
        return error(400, "invalid_request", "rows must be 1..1000")
    return report_usage(JsonResponse({"rows": [{"n": i + 1} for i in range(rows)]}), rows)


@require_user
def stream(request):
    """Metered and streamed (server-sent events). WSGI has no HTTP trailers,
    so the units go in the header and must be known before the body starts;
    for units known only at the end (LLM tokens), see the Express example's
    Trailer: X-Tollgate-Usage."""
    tokens = bounded_int(request.GET.get("tokens"), 1, 1000)
    if tokens is None:
        return error(400, "invalid_request", "tokens must be 1..1000")
    resp = StreamingHttpResponse(("data: token %d\n\n" % i for i in range(1, tokens + 1)), content_type="text/event-stream")
    resp["Cache-Control"] = "no-store"
    return report_usage(resp, tokens)
