"""The receiver for the Stripe events tollgate forwards (webhook.forward_url).

tollgate verified each event from Stripe, applied it to its own state and
re-signed it with webhook.forward_secret; this view checks that signature
with Stripe's own library and does the app's side effect.

The stripe package is imported for its webhook signature check only: the app
holds no Stripe API key and makes no Stripe calls (tollgate does).
"""
import logging
import sqlite3

import stripe
from django.conf import settings
from django.core.mail import send_mail
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

log = logging.getLogger(__name__)


@csrf_exempt  # authenticated by the signature instead
@require_POST
def tollgate_events(request):
    try:
        event = stripe.Webhook.construct_event(request.body, request.headers.get("Stripe-Signature", ""),
                                               settings.TOLLGATE_FORWARD_SECRET)
    except (ValueError, stripe.error.SignatureVerificationError):
        return JsonResponse({"error": "invalid_signature"}, status=400)
    try:
        result = welcome_once(event) if event["type"] == "checkout.session.completed" else "ignored"
    except Exception:
        log.exception("webhook: effect failed for %s; tollgate will retry", event["id"])
        return JsonResponse({"error": "failed"}, status=500)  # tollgate retries with backoff
    return JsonResponse({"received": True, "result": result})


def welcome_once(event):
    """Sends the welcome email once per event id: tollgate forwards at least
    once, so an event can arrive again. The event id is claimed in a sqlite
    ledger in the same transaction that sends: a failed send rolls the claim
    back (tollgate's retry sends again), and a second delivery, even at the
    same moment, waits for the first (BEGIN IMMEDIATE) and finds the id
    taken. Only a crash between the send and the commit can send twice; a
    real mail provider that takes an idempotency key closes that gap too."""
    settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(settings.DATA_DIR / "events.sqlite3"), timeout=10, isolation_level=None)
    try:
        db.execute("CREATE TABLE IF NOT EXISTS processed_events (id TEXT PRIMARY KEY, type TEXT NOT NULL, at TEXT NOT NULL)")
        db.execute("BEGIN IMMEDIATE")
        try:
            claimed = db.execute("INSERT OR IGNORE INTO processed_events VALUES (?, ?, datetime('now'))",
                                 (event["id"], event["type"])).rowcount
            if not claimed:
                db.execute("ROLLBACK")
                return "duplicate"
            session = event["data"]["object"]
            to = (session.get("customer_details") or {}).get("email")
            if to:
                send_mail("Welcome!", "Thanks for subscribing.", None, [to])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    finally:
        db.close()
    log.info("welcome email sent for %s (customer %s)", event["id"], event["data"]["object"].get("customer"))
    return "sent"
