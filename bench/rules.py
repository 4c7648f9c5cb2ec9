"""Per-event cost of the YAML rules: a realistic 50-rule set applied to enriched events.

    python bench/rules.py [--events 20000] [--rules 50]

The rules (written to a temporary folder and loaded with the real loader) mix what marketers
write: bot and internal-traffic drops (user agent flag, CIDR lists, staging hosts), renames of
internal event names, currency defaults, removal of internal fields, URL and query-string
conditions, a few regular expressions, geo conditions, value thresholds and routing. Events
are browser PageViews, ViewContents, AddToCarts and Purchases with parsed user agents and geo,
about 5% of them bots. Two baselines, measured in the same run on the same events: one dict
lookup and string comparison per rule (the least any 50-rule evaluator does), and a shallow
copy of the event's data. Prints medians, p99 and ratios. Target: median < 10 us per event.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.identity.geo import GeoInfo  # noqa: E402
from gateway.identity.useragent import UserAgentInfo  # noqa: E402
from gateway.model import Context, Event  # noqa: E402
from gateway.rules import RuleSet, RuleStats, load_rule_set  # noqa: E402

DESTINATIONS = ["main", "sales", "brand"]
LISTS = """\
version: 1
lists:
  internal_networks: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 198.51.100.0/24,
                      2001:db8::/32]
  staging_hosts: [staging.example.com, preview.example.com, localhost]
  blocked_countries: [KP, IR, SY, CU]
  premium_skus: [sku-100, sku-200, sku-300, sku-400]
"""
FIXED_RULES = """\
version: 1
rules:
  - name: drop bots
    when: {context.ua.is_bot: true}
    drop: true
  - name: drop internal
    when: {context.ip: {in_cidr: internal_networks}}
    drop: true
  - name: drop staging
    when: {url.host: {in_list: staging_hosts}}
    drop: true
  - name: drop blocked countries
    when: {context.geo.country: {in_list: blocked_countries}}
    drop: true
  - name: drop preview query
    when: {url.query.preview: {exists: true}}
    drop: true
  - name: checkout_complete
    when: {event_name: checkout_complete}
    rename_event: Purchase
  - name: cart_add
    when: {event_name: {in: [cart_add, add_to_basket]}}
    rename_event: AddToCart
  - name: default currency
    when: {event_name: Purchase, custom_data.currency: {exists: false}}
    set: {custom_data.currency: EUR}
  - name: strip internal fields
    when: {any: [{custom_data.internal_note: {exists: true}}, {custom_data.margin: {exists: true}}]}
    remove: [custom_data.internal_note, custom_data.margin]
  - name: big purchases to sales
    when: {event_name: Purchase, custom_data.value: {gte: 500}}
    send_to_destination_only: [sales, main]
  - name: purchases to main
    when: {event_name: Purchase}
    send_to_destination_only: [main, sales]
  - name: blog to brand
    when: {url.path: {starts_with: /blog/}}
    send_to_destination_only: [brand]
  - name: paid leads
    when: {event_name: Lead, url.query.utm_medium: {in: [cpc, ppc]}}
    set: {custom_data.lead_source: paid}
  - name: order ids
    when: {custom_data.order_id: {matches: "^(TEST|QA)-"}}
    drop: true
"""


def generated_rules(count: int) -> str:
    """Campaign-style rules that rarely match, as a large rule set mostly is."""
    templates = [
        "  - name: campaign {n}\n    when: {{url.query.utm_campaign: spring-{n}}}\n"
        "    set: {{custom_data.campaign: c{n}}}\n",
        "  - name: landing {n}\n    when: {{event_name: PageView, url.path: /landing/{n}}}\n"
        "    set: {{custom_data.landing: '{n}'}}\n",
        "  - name: country {n}\n    when: {{context.geo.country: X{n}, event_name: Lead}}\n"
        "    send_to_destination_only: [brand]\n",
        "  - name: sku {n}\n    when: {{custom_data.content_ids: {{contains: sku-9{n}}}}}\n"
        "    set: {{custom_data.category: c{n}}}\n",
        "  - name: old browser {n}\n    when:\n      all:\n        - context.ua.browser: IE\n"
        "        - context.ua.browser_version: {{starts_with: '{n}.'}}\n    drop: true\n",
        "  - name: legacy path {n}\n    when: {{url.path: {{matches: '^/old-{n}/'}}}}\n"
        "    rename_event: ViewContent\n",
        "  - name: not web {n}\n    when: {{not: {{action_source: website}}, event_id: x{n}}}\n"
        "    drop: true\n",
    ]
    body = "".join(templates[n % len(templates)].format(n=n) for n in range(count))
    return "version: 1\nrules:\n" + body


def make_events(count: int, rng: random.Random) -> list[dict[str, Any]]:
    paths = ["/", "/products/42", "/blog/spring-sale", "/cart", "/checkout", "/landing/7"]
    names = ["PageView"] * 6 + ["ViewContent"] * 3 + ["AddToCart", "Purchase", "Lead"]
    events = []
    for n in range(count):
        name = rng.choice(names)
        query = rng.choice(["", "?utm_source=google&utm_medium=cpc&utm_campaign=spring-3",
                            "?fbclid=IwAR123"])
        custom: dict[str, Any] = {"content_ids": [f"sku-{rng.randrange(1000)}"]}
        if name == "Purchase":
            custom.update(value=round(rng.uniform(5, 900), 2), order_id=f"ORD-{n}")
        events.append({
            "event_name": name, "event_time": 1_800_000_000, "event_id": f"evt-{n}",
            "action_source": "website",
            "event_source_url": f"https://www.example.com{rng.choice(paths)}{query}",
            "user_data": {"client_ip_address": "81.2.69.142", "em": "a" * 64, "fbp": "fb.1.2.3"},
            "custom_data": custom,
        })
    return events


UAS = [UserAgentInfo("Chrome", "131.0", "Windows", "10", "Other", False),
       UserAgentInfo("Mobile Safari", "17.4", "iOS", "17.4", "iPhone", False),
       UserAgentInfo("Googlebot", "2.1", "Other", "", "Spider", True)]
GEOS = [GeoInfo("GB", "ENG", "London", "SW1A"), GeoInfo("FR", "IDF", "Paris", "75001"), None]


def contexts(count: int, rng: random.Random) -> list[Context]:
    out = []
    for _ in range(count):
        bot = rng.random() < 0.05
        out.append(Context(
            source="browser", pixel_id="123456789012345",
            ip=rng.choice(["81.2.69.142", "2.125.160.216", "203.0.113.9", "2a02:1810::1"]),
            ua=UAS[2] if bot else rng.choice(UAS[:2]), geo=rng.choice(GEOS),
        ))
    return out


def load(rule_count: int) -> RuleSet:
    with tempfile.TemporaryDirectory() as folder:
        rules = Path(folder) / "rules"
        rules.mkdir()
        (rules / "00-lists.yaml").write_text(LISTS)
        (rules / "10-main.yaml").write_text(FIXED_RULES)
        fixed = FIXED_RULES.count("- name:")
        (rules / "20-campaigns.yaml").write_text(generated_rules(max(rule_count - fixed, 0)))
        return load_rule_set(rules, DESTINATIONS)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rules", type=int, default=50)
    args = parser.parse_args()

    rng = random.Random(11)
    started = time.perf_counter()
    rule_set = load(args.rules)
    load_ms = (time.perf_counter() - started) * 1000
    datas = make_events(args.events, rng)
    events = [Event(dict(data, custom_data=dict(data["custom_data"])), context)
              for data, context in zip(datas, contexts(args.events, rng), strict=True)]
    warm = [Event(dict(data, custom_data=dict(data["custom_data"])), context)
            for data, context in zip(make_events(2000, rng), contexts(2000, rng), strict=True)]
    stats = RuleStats()
    for event in warm:
        rule_set.apply(event, stats)
    probes = [f"name-{n}" for n in range(len(rule_set.rules))]

    def lookups(data: dict[str, Any]) -> bool:
        hit = False
        for probe in probes:
            hit = data.get("event_name") == probe or hit
        return hit

    base_ns, copy_ns, rules_ns = [], [], []
    clock = time.perf_counter_ns
    for event in events:
        start = clock()
        lookups(event.data)
        middle = clock()
        dict(event.data)
        copied = clock()
        rule_set.apply(event, stats)
        end = clock()
        base_ns.append(middle - start)
        copy_ns.append(copied - middle)
        rules_ns.append(end - copied)

    def report(label: str, values: list[int], base: float | None) -> float:
        median = statistics.median(values) / 1000
        p99 = statistics.quantiles(values, n=100)[98] / 1000
        ratio = f"   ratio {median / base:5.2f}x" if base else ""
        print(f"{label:<44} median {median:6.2f} us   p99 {p99:6.2f} us{ratio}")
        return median

    print(f"machine: {platform.machine()} {platform.processor() or ''} cores={os.cpu_count()} "
          f"python={platform.python_version()}")
    dropped = sum(stats.dropped.values())
    print(f"rules: {len(rule_set.rules)} (loaded in {load_ms:.0f} ms); events: {len(events)} "
          f"({dropped} dropped during warm-up and run, {sum(stats.routed.values())} routed)")
    base = report(f"baseline: {len(probes)} dict lookups + compares", base_ns, None)
    report("baseline: shallow copy of the event", copy_ns, base)
    median = report(f"rules: RuleSet.apply ({len(rule_set.rules)} rules, with stats)",
                    rules_ns, base)
    print(f"target: median < 10 us per event: {'met' if median < 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
