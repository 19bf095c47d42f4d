"""Flag checking shared by the locustfiles and the runners; imports nothing from Locust (no gevent patching)."""


def number(flag, raw, convert, accepted, check):
    """``raw`` converted and checked, or ValueError naming the flag and the accepted range."""
    try:
        value = convert(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{flag} must be {accepted} (got {raw!r})") from None
    if not check(value):
        raise ValueError(f"{flag} must be {accepted} (got {raw!r})")
    return value
