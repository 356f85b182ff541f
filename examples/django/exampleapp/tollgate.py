"""The app's side of tollgate: who is calling (the identity tollgate
verified), the billing API (tollgate talks to Stripe, this app never does),
and usage.

tollgate removes every X-Tollgate-* header a client sends and sets its own,
so these headers can be trusted exactly as far as the app cannot be reached
except through tollgate: serve it on 127.0.0.1 only (runserver 127.0.0.1:8000,
gunicorn --bind 127.0.0.1:8000; in a Kubernetes pod, or with compose's
network_mode: "service:tollgate", loopback is shared with the tollgate sidecar
and nothing else). TollgateMiddleware also refuses any request whose peer is
not on loopback, in case the app was started on a public address anyway.
"""
import ipaddress
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from functools import wraps
from typing import List, Optional

from django.conf import settings
from django.http import JsonResponse


@dataclass(frozen=True)
class Identity:
    user: str
    customer: Optional[str] = None
    plan: Optional[str] = None
    status: Optional[str] = None
    features: List[str] = field(default_factory=list)

    @classmethod
    def from_headers(cls, headers):
        user = headers.get("X-Tollgate-User")
        if not user:
            return None  # forwarded without a user: an auth: none route
        features = headers.get("X-Tollgate-Features")
        return cls(user=user, customer=headers.get("X-Tollgate-Customer"), plan=headers.get("X-Tollgate-Plan"),
                   status=headers.get("X-Tollgate-Status"), features=features.split(",") if features else [])


def is_loopback(addr):
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def error(status, code, message):
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


class TollgateMiddleware:
    """Refuses requests that did not come over loopback and puts the verified
    identity on request.tollgate (None without a user)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not is_loopback(request.META.get("REMOTE_ADDR", "")):
            return error(403, "not_through_tollgate", "This app is served only through tollgate.")
        request.tollgate = Identity.from_headers(request.headers)
        return self.get_response(request)


def require_user(view):
    """Refuses to run a view without a verified user: the route is not
    auth: required in tollgate's config, or tollgate is not in front."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.tollgate is None:
            return error(401, "no_identity", "No X-Tollgate-User: this request did not pass an auth: required route of tollgate.")
        return view(request, *args, **kwargs)

    return wrapper


def require_feature(feature):
    """Repeats tollgate's gate in the app (the route's require in tollgate's
    config enforces it; this guards a route left out of the config)."""

    def decorator(view):
        @require_user
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if feature not in request.tollgate.features:
                return error(403, "feature_required", "This needs the %s feature." % feature)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def report_usage(response, units):
    """Tells tollgate how many units this answer costs (instead of the
    route's 1); tollgate removes the header before the client sees it."""
    response["X-Tollgate-Usage"] = str(units)
    return response


def billing(request, method, path, body=None, idempotency_key=None):
    """Calls tollgate's billing API as the caller: passes on the credential
    tollgate forwarded (Authorization or the token cookie), so tollgate acts
    for that user and no one else. Returns (status, data)."""
    headers = {"Accept": "application/json"}
    for name in ("Authorization", "Cookie", "X-Request-Id"):
        if request.headers.get(name):
            headers[name] = request.headers[name]
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    url = settings.TOLLGATE_URL + settings.TOLLGATE_BILLING_PREFIX + "/" + path
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.load(e)
        except ValueError:
            return e.code, {"error": {"code": "bad_answer", "message": "tollgate answered %d" % e.code}}
