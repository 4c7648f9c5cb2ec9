"""What every type reads the same way from an HTTP answer."""

from __future__ import annotations

from gateway.destinations.ga4.sender import classify as ga4_classify
from gateway.destinations.http import MAX_RETRY_AFTER, retry_after
from gateway.destinations.pinterest import classify as pinterest_classify
from gateway.destinations.snapchat.sender import classify as snap_classify
from gateway.destinations.tiktok.sender import classify as tiktok_classify
from gateway.errors import Permanent, RateLimited


def test_retry_after_reads_seconds_and_dates_and_refuses_junk() -> None:
    now = 1_800_000_000.0
    assert retry_after("30", now) == 30
    assert retry_after("Fri, 15 Jan 2027 08:00:30 GMT", 1_800_000_000.0) is not None
    assert retry_after("999999999", now) == MAX_RETRY_AFTER  # never a hold until restart
    assert retry_after("²", now) is None and retry_after("1e9", now) is None
    assert retry_after("", now) is None and retry_after(None, now) is None
    assert retry_after("Mon, 01 Jan 2001 00:00:00 GMT", now) == 0


def test_every_type_bounds_a_platforms_retry_after() -> None:
    for error in (ga4_classify(429, b"", "9" * 400), snap_classify(429, b"{}", "", "²"),
                  pinterest_classify(429, b"{}", "1e9")):
        assert isinstance(error, RateLimited)
        assert 1 <= error.min_delay <= MAX_RETRY_AFTER


def test_a_413_from_anything_on_the_way_splits_the_batch() -> None:
    for error in (tiktok_classify(413, b"<html>Request Entity Too Large</html>"),
                  snap_classify(413, b"<html>Request Entity Too Large</html>")):
        assert isinstance(error, Permanent) and "too large" in error.reason


def test_a_platforms_message_never_carries_personal_data_into_stored_reasons() -> None:
    from gateway.destinations.http import masked

    message = ("Invalid user_data.em for joe@example.com on https://shop.example/p?em=joe%40x.com"
               " (phone +1 (650) 555-1212), code 4196")
    assert masked(message) == ("Invalid user_data.em for (email) on https://shop.example/p?(query)"
                               " (phone (number)), code 4196")
    body = b'{"code": 4196, "message": "' + message.encode() + b'"}'
    snap_body = b'{"status": "INVALID", "reason": "' + message.encode() + b'"}'
    for error in (pinterest_classify(400, body), snap_classify(400, snap_body),
                  ga4_classify(400, message.encode())):
        assert error is not None
        assert "joe" not in error.reason and "555" not in error.reason
