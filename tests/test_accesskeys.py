"""Access keys: matching by digest against every key, failure throttling per client IP, and
`tag-gateway keys new`, whose printed entry authorizes requests once pasted into a config."""

from __future__ import annotations

import argparse
import hashlib
import hmac
import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client import CollectorRegistry

from gateway import accesskeys
from gateway.accesskeys import AccessDenied, AccessGuard, FailureThrottle, KeyRing
from gateway.config import parse_settings
from gateway.mintkeys import add_keys_parser, run_keys
from gateway.settings import AccessKey

from .conftest import PIXEL_A, PIXEL_B, destination_yaml, settings_yaml
from .fake_graph import FakeGraph
from .ingest.test_server_ingress import ServerFactory, event, start_server

__all__ = ["start_server"]  # the fixture, shared with the ingress tests


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


KEYS = (
    AccessKey(name="shop", sha256=digest("key-shop"), pixels=frozenset({PIXEL_A})),
    AccessKey(name="crm", sha256=digest("key-crm"), pixels=None),
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


# -- matching ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("presented", "expected"), [
    ("key-shop", "shop"), ("key-crm", "crm"), ("key-shop ", None), ("", None),
    ("KEY-SHOP", None), ("clé-unicode", None),
])
def test_key_ring_matches_by_sha256(presented: str, expected: str | None) -> None:
    found = KeyRing(KEYS).match(presented)
    assert (found.name if found else None) == expected


def test_key_ring_compares_every_key_whichever_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    compare = hmac.compare_digest

    def counting(a: str, b: str) -> bool:
        calls.append(b)
        return compare(a, b)

    monkeypatch.setattr(accesskeys.hmac, "compare_digest", counting)
    ring = KeyRing(KEYS)
    for presented in ("key-shop", "key-crm", "wrong"):
        calls.clear()
        ring.match(presented)
        assert calls == [KEYS[0].sha256, KEYS[1].sha256]


# -- throttling ----------------------------------------------------------------------------------
def test_throttle_blocks_after_five_failures_within_a_minute() -> None:
    clock = Clock()
    throttle = FailureThrottle(clock)
    for _ in range(4):
        throttle.record_failure("198.51.100.7")
        clock.now += 10
    assert throttle.retry_after("198.51.100.7") is None
    throttle.record_failure("198.51.100.7")  # 5th failure, 40 s after the first
    assert throttle.retry_after("198.51.100.7") == 20
    assert throttle.retry_after("198.51.100.8") is None
    clock.now += 20
    assert throttle.retry_after("198.51.100.7") is None


def test_throttle_ignores_failures_spread_beyond_the_window() -> None:
    clock = Clock()
    throttle = FailureThrottle(clock)
    for _ in range(10):
        throttle.record_failure("198.51.100.7")
        clock.now += 16  # five failures span 64 s > 60 s
        assert throttle.retry_after("198.51.100.7") is None


def test_throttle_forgives_a_client_that_gets_it_right_and_stays_bounded() -> None:
    clock = Clock()
    throttle = FailureThrottle(clock, max_clients=100)
    for _ in range(5):
        throttle.record_failure("198.51.100.7")
    assert throttle.retry_after("198.51.100.7") == 60
    throttle.forgive("198.51.100.7")
    assert throttle.retry_after("198.51.100.7") is None
    for n in range(1000):
        throttle.record_failure(f"10.0.{n // 256}.{n % 256}")
    assert len(throttle) == 100
    assert throttle.retry_after("10.0.3.231") is None  # only one failure each


def test_guard_refuses_with_status_and_counts_by_reason(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    guard = AccessGuard(lambda: KEYS, registry, Clock())
    assert guard.authorize("key-shop", PIXEL_A, "192.0.2.1", "trace").name == "shop"
    assert guard.authorize("key-crm", PIXEL_B, "192.0.2.1", "trace").name == "crm"
    cases = [("", PIXEL_A, 401, "missing_key"), ("guess", PIXEL_A, 401, "invalid_key"),
             ("key-shop", PIXEL_B, 403, "out_of_scope")]
    for key, pixel, status, label in cases:
        with pytest.raises(AccessDenied) as refused:
            guard.authorize(key, pixel, "192.0.2.1", "trace-1")
        assert (refused.value.status, refused.value.label) == (status, label)
        assert registry.get_sample_value("gateway_access_denied_total", {"reason": label}) == 1
    assert "key-shop" not in caplog.text and "guess" not in caplog.text
    assert "access key 'shop' is not allowed for this pixel" in caplog.text
    assert "fbtrace_id trace-1" in caplog.text


# -- tag-gateway keys new --------------------------------------------------------------------------
def keys_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tag-gateway")
    add_keys_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["keys", "new", *argv])


def new_key(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, dict[str, Any]]:
    """Run `keys new`; the printed key and the parsed config entry."""
    assert run_keys(keys_args(*argv)) == 0
    out = capsys.readouterr().out
    [key] = re.findall(r"^    (\S{43})$", out, re.MULTILINE)
    entry_yaml = out[out.index("access_keys:"):]
    [entry] = yaml.safe_load(entry_yaml)["access_keys"]
    return key, entry


def test_keys_new_prints_a_random_key_and_its_sha256(capsys: pytest.CaptureFixture[str]) -> None:
    key, entry = new_key(capsys, "--name", "backend", "--pixels", f"{PIXEL_A},{PIXEL_B}")
    assert entry == {"name": "backend", "sha256": digest(key), "pixels": [PIXEL_A, PIXEL_B]}
    other, entry = new_key(capsys, "--name", "crm.sync", "--all-pixels")
    assert other != key
    assert entry["pixels"] == "*"


@pytest.mark.parametrize("argv", [
    ["--name", "backend"],  # no scope
    ["--name", "backend", "--pixels", "123", "--all-pixels"],  # both scopes
    ["--name", "backend", "--pixels", "12a"],
    ["--name", "has space", "--all-pixels"],
    ["--pixels", "123"],  # no name
])
def test_keys_new_refuses_bad_arguments(argv: list[str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        keys_args(*argv)
    assert exited.value.code == 2
    assert "error:" in capsys.readouterr().err


async def test_the_printed_entry_authorizes_requests(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, fake_graph: FakeGraph,
    start_server: ServerFactory,
) -> None:
    assert run_keys(keys_args("--name", "backend", "--pixels", PIXEL_A)) == 0
    printed = capsys.readouterr().out
    [key] = re.findall(r"^    (\S{43})$", printed, re.MULTILINE)
    entry_yaml = printed[printed.index("access_keys:"):]  # pasted as printed
    settings = parse_settings(
        settings_yaml(tmp_path, destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A),
                      extra=entry_yaml),
        env={},
    )
    client = await start_server(settings)
    body = orjson.dumps({"data": [event(event_time=int(time.time()))], "accessKey": key})
    response = await client.post(f"/capi/{PIXEL_A}/events", data=body)
    assert response.status == 202
    response = await client.post(f"/capi/{PIXEL_B}/events", data=body)
    assert response.status == 403
    response = await client.post(f"/capi/{PIXEL_A}/events",
                                 data=body.replace(key.encode(), b"x" * 43))
    assert response.status == 401
    await fake_graph.wait_for_events(1)
