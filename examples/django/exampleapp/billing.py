"""The billing settings page, built only on tollgate's billing API: the page
reads the subscription, usage and invoices from tollgate, and every button is
a form whose view makes one billing API call and redirects back (or to
Stripe's Checkout and portal pages)."""
import re
import uuid
from datetime import datetime, timedelta, timezone

from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from .tollgate import billing, require_user

# The plans the page offers. Their prices, features and limits live in
# tollgate's config and in Stripe; this is only what the page shows.
PLANS = [
    {"id": "starter", "name": "Starter", "price": "$20 / month", "blurb": "Reports, 1,000 API calls a month"},
    {"id": "pro", "name": "Pro", "price": "$80 / month", "blurb": "Reports and exports, 100,000 API calls a month"},
]


@require_GET
@require_user
def page(request):
    sub_status, sub = billing(request, "GET", "subscription")
    if sub_status != 200:
        return render(request, "unavailable.html", {"code": sub.get("error", {}).get("code")}, status=502)
    usage_status, usage = billing(request, "GET", "usage")
    invoices_status, invoices = billing(request, "GET", "invoices?limit=10")
    preview = None
    plan = request.GET.get("preview")
    if any(p["id"] == plan for p in PLANS):
        status, data = billing(request, "POST", "subscription/preview", {"plan": plan})
        preview = {"ok": status == 200, "data": data}
    return render(request, "billing.html", {
        "sub": sub, "plans": PLANS, "preview": preview, "error": request.GET.get("error"),
        "usage": usage if usage_status == 200 else None, "usage_error": usage.get("error", {}).get("code"),
        "invoices": invoices if invoices_status == 200 else None, "invoices_error": invoices.get("error", {}).get("code"),
        "idem": uuid.uuid4(),  # a double-submitted form replays the first answer
        "first_pause_end": first_pause_end(),
    })


INVALID = object()  # a form field that is not what it should be: no API call

# Every POST is a button on the page; CsrfViewMiddleware checks its token.
ACTIONS = {
    "checkout": lambda post: ("checkout", {"plan": post.get("plan", "")}),
    "portal": lambda post: ("portal", None),
    # The preview's proration_date, so the change bills what the customer saw.
    "change": lambda post: ("subscription/change", {"plan": post.get("plan", ""), "proration_date": whole(post.get("proration_date"))}),
    "cancel": lambda post: ("subscription/cancel", None),
    "resume": lambda post: ("subscription/resume", None),
    "pause": lambda post: ("subscription/pause", pause_body(post.get("resumes_on", ""))),
}


@require_POST
@require_user
def action(request, action):
    if action not in ACTIONS:
        raise Http404("no such action")
    path, body = ACTIONS[action](request.POST)
    if body is INVALID:
        return see_other("/billing?" + urlencode({"error": "invalid_date"}))
    status, data = billing(request, "POST", path, body, request.POST.get("idem"))
    if status != 200:
        return see_other("/billing?" + urlencode({"error": data.get("error", {}).get("code", "failed")}))
    return see_other(data.get("url") or "/billing")


def pause_body(day):
    """The pause's body: until resumed when no date was picked, else until
    that day's start (UTC); INVALID for a date that is not one."""
    if day == "":
        return None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
        return INVALID
    try:
        at = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        return INVALID
    return {"resumes_at": int(at.timestamp())}


def first_pause_end():
    """The first day a pause may end on: tollgate wants resumes_at at least
    an hour ahead."""
    t = datetime.now(timezone.utc) + timedelta(hours=1)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if day < t:
        day += timedelta(days=1)
    return day.strftime("%Y-%m-%d")


def whole(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def see_other(url):
    """303: the browser follows a form post's answer with a GET."""
    response = HttpResponseRedirect(url)
    response.status_code = 303
    return response
