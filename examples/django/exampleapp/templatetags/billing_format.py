from datetime import datetime, timezone

from django import template

register = template.Library()


@register.filter
def isodate(value):
    """An ISO timestamp or Unix seconds as YYYY-MM-DD."""
    if not value:
        return ""
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc).strftime("%Y-%m-%d")
    return str(value)[:10]


@register.filter
def money(amount, currency):
    """An amount in the currency's smallest unit, for usd-like currencies."""
    if not isinstance(amount, int) or not currency:
        return ""
    sign = "-" if amount < 0 else ""
    symbol = "$" if currency.lower() == "usd" else currency.upper() + " "
    return "%s%s%.2f" % (sign, symbol, abs(amount) / 100)
