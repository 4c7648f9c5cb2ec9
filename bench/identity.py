"""Per-hit cost of identity + enrichment + hashing, with warm caches.

    python bench/identity.py [--hits 20000]

Times, for realistic pixel hits (varied user agents, IPs behind a trusted proxy, fbclid,
cookies, advanced matching): client IP from the forwarding chain, first-party cookie decisions,
building the CAPI event, then UA parsing, geo lookup, normalization + SHA-256 of user_data and
the geo fill; our own query parsing is timed on its own. Baseline, measured in the same run on
the same hits: the standard library's parse_qsl of the hit's query string, the least any
handler does. Prints medians, p99 and the ratios. Target: identity median < 30 us.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from multidict import CIMultiDict, CIMultiDictProxy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.enrich import Enricher  # noqa: E402
from gateway.identity.cookies import FirstPartyCookies  # noqa: E402
from gateway.identity.geo import GeoLocator  # noqa: E402
from gateway.identity.proxypresets import PRESETS  # noqa: E402
from gateway.identity.trustedproxies import TrustedProxies  # noqa: E402
from gateway.identity.useragent import shared_parser  # noqa: E402
from gateway.ingest.body import parse_pairs  # noqa: E402
from gateway.ingest.hitevent import build_hit_event  # noqa: E402

GEO = ROOT / "tests" / "data" / "maxmind" / "GeoIP2-City-Test.mmdb"
USER_AGENTS = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.{} Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/13{}.0.{}.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; Pixel {}) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.{}.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_{}) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.{} Safari/605.1.15",
]
GEO_IPS = ["81.2.69.142", "2.125.160.216", "216.160.83.56", "89.160.20.128"]


def make_hits(
    count: int, rng: random.Random, first_visitor: int = 0
) -> list[tuple[str, CIMultiDictProxy[str], str]]:
    """(query string, headers, cookie header) for `count` varied hits."""
    agents = [ua.format(a, b) for ua in USER_AGENTS for a in range(8) for b in range(8)]
    ips = GEO_IPS + [f"198.51.{rng.randrange(256)}.{rng.randrange(256)}" for _ in range(996)]
    hits = []
    for n in range(count):
        params = {
            "id": "123456789012345", "ev": rng.choice(["PageView", "ViewContent", "Lead"]),
            "eid": f"evt-{n}", "dl": "https://shop.example.co.uk/p/42?fbclid=IwAR" + str(n % 50),
            "rl": "https://www.google.com/", "cd[content_ids]": '["sku-1"]', "cd[value]": "9.5",
            # A visitor's session sends about five hits with the same advanced matching.
            "cd[currency]": "GBP", "ud[em]": f"Person{first_visitor + n // 5}@Example.com",
            "ud[ph]": f"07911 {123456 + first_visitor + n // 5}",
            "ud[fn]": rng.choice(["Valéry", "Mary", "Jo"]),
            "ts": "1800000000000",
        }
        headers = CIMultiDictProxy(CIMultiDict({
            "User-Agent": rng.choice(agents),
            "X-Forwarded-For": f"{rng.choice(ips)}, 10.0.0.1",
            "X-Forwarded-Proto": "https",
        }))
        cookie = "_fbp=fb.2.1700000000000.12345" if n % 3 else ""
        hits.append((urlencode(params), headers, cookie))
    return hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hits", type=int, default=20000)
    args = parser.parse_args()

    rng = random.Random(7)
    hits = make_hits(args.hits, rng)
    # Warm-up hits share the user agents and IPs but not the visitors: in the measured run
    # each visitor's first hit hashes from scratch, the next four hit the cache.
    warm_up = make_hits(args.hits, rng, first_visitor=10 * args.hits)
    proxies = TrustedProxies([*PRESETS["private"]])
    cookies = FirstPartyCookies()
    geo = GeoLocator([GEO])
    enricher = Enricher(shared_parser(), geo)

    def baseline(query: str) -> None:
        dict(parse_qsl(query, keep_blank_values=True))

    def parse(query: str) -> dict[str, str]:
        return parse_pairs(query, "query string")

    def identity(params: dict[str, str], headers: CIMultiDictProxy[str], cookie: str) -> None:
        jar = dict(pair.split("=", 1) for pair in cookie.split("; ") if pair)
        ip = proxies.client_ip("10.0.0.2", headers)
        ids = cookies.resolve(host=proxies.host("10.0.0.2", headers, "shop.example.co.uk"),
                              secure=proxies.scheme("10.0.0.2", headers, "http") == "https",
                              cookies=jar, params=params, now_ms=1_800_000_000_000)
        event = build_hit_event(params, ip=ip, user_agent=headers.get("User-Agent"),
                                fbp=ids.fbp, fbc=ids.fbc, now=1_800_000_000.0)
        enricher.enrich(event)

    for query, headers, cookie in warm_up:  # warm the caches (UA, geo, trust)
        identity(parse(query), headers, cookie)

    base_ns, parse_ns, full_ns = [], [], []
    for query, headers, cookie in hits:
        start = time.perf_counter_ns()
        baseline(query)
        parsed = time.perf_counter_ns()
        params = parse(query)
        middle = time.perf_counter_ns()
        identity(params, headers, cookie)
        end = time.perf_counter_ns()
        base_ns.append(parsed - start)
        parse_ns.append(middle - parsed)
        full_ns.append(end - middle)

    def us(values: list[int], q: float) -> float:
        return statistics.quantiles(values, n=100)[int(q) - 1] / 1000 if q < 100 else 0.0

    base_median = statistics.median(base_ns) / 1000
    parse_median = statistics.median(parse_ns) / 1000
    full_median = statistics.median(full_ns) / 1000
    print(f"machine: {platform.machine()} {platform.processor() or ''} cores={os.cpu_count()} "
          f"python={platform.python_version()}")
    print(f"hits: {len(hits)} (warm caches: {len({h[1]['User-Agent'] for h in hits})} user "
          f"agents, 1000 client IPs; {len(hits) // 5} new visitors sending 5 hits each)")
    print(f"baseline: urllib parse_qsl        median {base_median:6.1f} us   "
          f"p99 {us(base_ns, 99):6.1f} us")
    print(f"gateway hit parameter parsing     median {parse_median:6.1f} us   "
          f"p99 {us(parse_ns, 99):6.1f} us   ratio {parse_median / base_median:.2f}x")
    print(f"identity + enrich + hash          median {full_median:6.1f} us   "
          f"p99 {us(full_ns, 99):6.1f} us   ratio {full_median / base_median:.2f}x")
    print(f"target: identity+enrich+hash median < 30 us: "
          f"{'met' if full_median < 30 else 'NOT met'}")


if __name__ == "__main__":
    main()
