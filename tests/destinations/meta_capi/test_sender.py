"""Meta's error table (docs/meta-capi.md): which answers are about one event (bisected and
dead-lettered), which about the destination itself (paused with an alert), which transient."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.destinations.meta_capi.sender import classify
from gateway.errors import (
    DestinationRefused,
    Permanent,
    RateLimited,
    RelayError,
    Retryable,
    TokenRejected,
)

UNSUPPORTED = ("Unsupported post request. Object with ID '111' does not exist, cannot be loaded "
               "due to missing permissions, or does not support this operation")


def answer(code: int, subcode: int | None = None, kind: str = "OAuthException",
           message: str = "scripted") -> bytes:
    error: dict[str, Any] = {"message": message, "type": kind, "code": code,
                             "fbtrace_id": "T"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return orjson.dumps({"error": error})


@pytest.mark.parametrize(("status", "body", "expected"), [
    # about the pixel, the app or the token's permissions: pause, never bisect
    (400, answer(100, 33, "GraphMethodException", UNSUPPORTED), DestinationRefused),
    (400, answer(100, None, "GraphMethodException", "Unsupported post request."),
     DestinationRefused),
    (403, answer(10, None, message="Application does not have permission for this action"),
     DestinationRefused),
    (403, answer(200, None, message="Permissions error"), DestinationRefused),
    (403, answer(294, None, message="Managing advertisements requires ads_management"),
     DestinationRefused),
    (400, answer(3, None, message="Application does not have the capability"),
     DestinationRefused),
    (400, answer(803, None, message="Some of the aliases you requested do not exist"),
     DestinationRefused),
    (401, answer(190, 463, message="Session has expired"), TokenRejected),
    # about one event: bisect, dead-letter the refused one
    (400, answer(100, 2804003, message="event_time is too old"), Permanent),
    (400, answer(100, 2804019, message="custom_data.value is not a number"), Permanent),
    (400, answer(100, None, message="Invalid parameter"), Permanent),
    # transient and rate limits, as before
    (503, answer(2, None), Retryable),
    (400, answer(17, None), RateLimited),
])
def test_classify(status: int, body: bytes, expected: type[RelayError]) -> None:
    error = classify(status, body)
    assert type(error) is expected, error.reason
    assert error.fbtrace_id == "T"


def test_a_token_refusal_is_a_destination_refusal_too() -> None:
    # The relay pauses on both; only a token refusal resumes on new credentials alone.
    assert isinstance(classify(401, answer(190, None)), DestinationRefused)
    assert not isinstance(classify(400, answer(100, 2804003)), DestinationRefused)
