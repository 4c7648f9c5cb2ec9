"""RuleSet.apply: order across and within files, drop, routing, transforms and their interplay."""

from __future__ import annotations

import hashlib
from pathlib import Path

from gateway.destinations.meta_capi import MetaCapiOptions
from gateway.rules import EMPTY_HASH, RuleStats, load_rule_set
from gateway.settings import DestinationSettings

from .helpers import decide, event, load, write_rules

MAIN = DestinationSettings(name="main", options=MetaCapiOptions(),
                           accepts=frozenset({"111"}))
SALES = DestinationSettings(name="sales", options=MetaCapiOptions(),
                            accepts=frozenset({"111"}))
BRAND = DestinationSettings(name="brand", options=MetaCapiOptions(),
                            accepts=frozenset({"222"}))


def test_files_apply_in_name_order_then_in_file_order(tmp_path: Path) -> None:
    folder = write_rules(tmp_path, {
        "20-b.yaml": "version: 1\nrules:\n  - name: b1\n    set: {custom_data.seen: b1}\n"
                     "  - name: b2\n    set: {custom_data.seen: b2}\n",
        "10-a.yaml": "version: 1\nrules:\n  - name: a1\n    set: {custom_data.seen: a1}\n",
        "README.md": "not a rule file",
    })
    rule_set = load_rule_set(folder, ["main"])
    assert rule_set.files == ("rules/10-a.yaml", "rules/20-b.yaml")
    the_event = event()
    decision = rule_set.apply(the_event)
    assert decision.matched == ["a1", "b1", "b2"]
    assert the_event.data["custom_data"] == {"seen": "b2"}


def test_drop_ends_processing(tmp_path: Path) -> None:
    rule_set = load(tmp_path, """\
        version: 1
        rules:
          - {name: tag, set: {custom_data.tagged: true}}
          - {name: bots, when: {context.ua.is_bot: true}, drop: true}
          - {name: after, set: {custom_data.after: true}}
        """)
    from .helpers import BOT
    bot = event(ua=BOT)
    decision = rule_set.apply(bot)
    assert decision.dropped and decision.dropped_by == "bots"
    assert decision.matched == ["tag", "bots"]
    assert bot.data["custom_data"] == {"tagged": True}
    person = rule_set.apply(event())
    assert not person.dropped and person.matched == ["tag", "after"]


def test_routing_narrows_and_intersects(tmp_path: Path) -> None:
    rule_set = load(tmp_path, """\
        version: 1
        rules:
          - name: purchases
            when: {event_name: Purchase}
            send_to_destination_only: [main, sales]
          - name: big
            when: {custom_data.value: {gte: 500}}
            send_to_destination_only: [sales, brand]
          - name: tiny
            when: {custom_data.value: {lt: 1}}
            send_to_destination_only: brand
        """)
    everyone = [MAIN, SALES, BRAND]
    small = decide(rule_set, {"event_name": "Purchase", "custom_data": {"value": 20}})
    assert small.only == {"main", "sales"}
    assert [d.name for d in small.select(everyone, "111")] == ["main", "sales"]
    big = decide(rule_set, {"event_name": "Purchase", "custom_data": {"value": 900}})
    assert big.only == {"sales"} and big.matched == ["purchases", "big"]
    assert [d.name for d in big.select(everyone, "111")] == ["sales"]
    # routed to a destination that does not accept the pixel: routing wins
    lead = decide(rule_set, {"event_name": "Lead", "custom_data": {"value": 0}})
    assert [d.name for d in lead.select(everyone, "111")] == ["brand"]
    # [main, sales] then [brand]: nothing in common, the event goes nowhere (and says so)
    free = decide(rule_set, {"event_name": "Purchase", "custom_data": {"value": 0}})
    assert free.only == frozenset() and free.routed_nowhere and not free.dropped
    assert free.select(everyone, "111") == []
    # not routed: every destination that accepts the pixel
    page = decide(rule_set, {"custom_data": {"value": 20}})
    assert page.only is None and not page.routed_nowhere
    assert [d.name for d in page.select(everyone, "222")] == ["brand"]


def test_dropped_events_go_nowhere_even_when_routed(tmp_path: Path) -> None:
    rule_set = load(tmp_path, """\
        version: 1
        rules:
          - {name: route, send_to_destination_only: [main]}
          - {name: drop, when: {event_name: Lead}, drop: true}
        """)
    decision = decide(rule_set, {"event_name": "Lead"})
    assert decision.dropped_by == "drop" and decision.only == {"main"}
    assert decision.select([MAIN], "111") == []


def test_transforms_apply_set_then_remove_then_rename(tmp_path: Path) -> None:
    rule_set = load(tmp_path, """\
        version: 1
        rules:
          - name: all three
            when: {event_name: checkout_complete}
            set:
              custom_data.currency: EUR
              custom_data.note: temporary
              custom_data.shipping.method: express
              action_source: app
              event_source_url: https://shop.example.com/thanks?ok=1
            remove: [custom_data.note, user_data.em, referrer_url, custom_data.absent.key]
            rename_event: Purchase
        """)
    the_event = event({"event_name": "checkout_complete", "referrer_url": "https://r/",
                       "custom_data": {"value": 5, "shipping": "pickup"}})
    rule_set.apply(the_event)
    assert the_event.data["event_name"] == "Purchase"
    assert the_event.data["action_source"] == "app"
    assert the_event.data["event_source_url"] == "https://shop.example.com/thanks?ok=1"
    assert the_event.data["custom_data"] == {"value": 5, "currency": "EUR",
                                             "shipping": {"method": "express"}}
    assert "em" not in the_event.data["user_data"]
    assert "referrer_url" not in the_event.data


def test_set_creates_custom_data_and_never_shares_values(tmp_path: Path) -> None:
    rule_set = load(tmp_path, """\
        version: 1
        rules:
          - {name: ids, set: {custom_data.content_ids: [a, b]}}
        """)
    first, second = event({"custom_data": "garbage"}), event()
    rule_set.apply(first)
    rule_set.apply(second)
    first.data["custom_data"]["content_ids"].append("mutated")
    assert second.data["custom_data"] == {"content_ids": ["a", "b"]}


def test_later_rules_see_earlier_transforms(tmp_path: Path) -> None:
    rule_set = load(tmp_path, """\
        version: 1
        rules:
          - {name: rename, when: {event_name: checkout_complete}, rename_event: Purchase}
          - name: route purchases
            when: {event_name: Purchase}
            send_to_destination_only: [sales]
          - name: new url
            when: {event_name: Purchase}
            set: {event_source_url: "https://b.example/x?src=gw"}
          - name: by host
            when: {url.host: b.example, url.query.src: gw}
            set: {custom_data.host_seen: true}
          - {name: no url, when: {url.host: b.example}, remove: [event_source_url]}
          - {name: url gone, when: {url.host: {exists: false}}, set: {custom_data.url_gone: true}}
        """)
    the_event = event({"event_name": "checkout_complete"})
    decision = rule_set.apply(the_event)
    assert decision.matched == ["rename", "route purchases", "new url", "by host", "no url",
                                "url gone"]
    assert decision.only == {"sales"}
    assert the_event.data["custom_data"] == {"host_seen": True, "url_gone": True}


def test_a_rename_reaches_rules_written_for_the_new_name_only(tmp_path: Path) -> None:
    """The index skips rules by event name; a rename must switch to the new name's rules."""
    rule_set = load(tmp_path, """\
        version: 1
        rules:
          - {name: purchase before, when: {event_name: Purchase}, set: {custom_data.before: 1}}
          - {name: rename, when: {event_name: [order_done, checkout]}, rename_event: Purchase}
          - {name: old name, when: {event_name: order_done}, set: {custom_data.old: 1}}
          - {name: purchase after, when: {event_name: Purchase}, set: {custom_data.after: 1}}
          - {name: lead, when: {event_name: Lead}, rename_event: Purchase}
          - {name: back, when: {event_name: Purchase, custom_data.after: 1}, rename_event: Lead}
          - {name: lead again, when: {event_name: Lead}, set: {custom_data.lead: 1}}
        """)
    the_event = event({"event_name": "order_done"})
    decision = rule_set.apply(the_event)
    assert decision.matched == ["rename", "purchase after", "back", "lead again"]
    assert the_event.data["event_name"] == "Lead"
    assert the_event.data["custom_data"] == {"after": 1, "lead": 1}


def test_disabled_rules_are_checked_but_not_applied(tmp_path: Path) -> None:
    rule_set = load(tmp_path, """\
        version: 1
        rules:
          - {name: off, enabled: false, drop: true}
          - {name: on, enabled: true, set: {custom_data.on: true}}
        """)
    decision = decide(rule_set)
    assert not decision.dropped and decision.matched == ["on"]
    assert [rule.name for rule in rule_set.rules] == ["off", "on"]


def test_stats_count_matches_drops_routes_and_dead_ends(tmp_path: Path) -> None:
    rule_set = load(tmp_path, """\
        version: 1
        rules:
          - {name: to main, when: {event_name: Purchase}, send_to_destination_only: [main]}
          - {name: to sales, when: {custom_data.value: 0}, send_to_destination_only: [sales]}
          - {name: drop leads, when: {event_name: Lead}, drop: true}
        """)
    stats = RuleStats()
    for data in ({"event_name": "Purchase", "custom_data": {"value": 3}},
                 {"event_name": "Purchase", "custom_data": {"value": 0}},
                 {"event_name": "Lead"}, {"event_name": "PageView"}):
        rule_set.apply(event(data), stats)
    assert stats.events == 4
    assert list(stats.rows()) == [("drop leads", 1, 1, 0), ("to main", 2, 0, 2),
                                  ("to sales", 1, 0, 1)]
    assert stats.routed_nowhere == 1


def test_hash_covers_file_names_and_contents(tmp_path: Path) -> None:
    text = "version: 1\nrules:\n  - {name: r, drop: true}\n"
    first = load_rule_set(write_rules(tmp_path / "a", {"10-x.yaml": text}), ["main"])
    same = load_rule_set(write_rules(tmp_path / "b", {"10-x.yaml": text}), ["main"])
    renamed = load_rule_set(write_rules(tmp_path / "c", {"20-x.yaml": text}), ["main"])
    edited = load_rule_set(write_rules(tmp_path / "d", {"10-x.yaml": text + "# note\n"}),
                           ["main"])
    assert len(first.hash) == 12 and int(first.hash, 16) >= 0
    assert first.hash == same.hash
    assert len({first.hash, renamed.hash, edited.hash}) == 3


def test_absent_or_empty_folder_is_an_empty_rule_set(tmp_path: Path) -> None:
    absent = load_rule_set(tmp_path / "nothing-here", ["main"])
    (tmp_path / "empty").mkdir()
    empty = load_rule_set(tmp_path / "empty", ["main"])
    assert absent.rules == () and empty.rules == () and empty.files == ()
    assert absent.hash == empty.hash == EMPTY_HASH == hashlib.sha256(b"").hexdigest()[:12]
    the_event = event()
    before = dict(the_event.data)
    decision = empty.apply(the_event)
    assert decision.matched == [] and decision.only is None and not decision.dropped
    assert the_event.data == before


def test_files_with_only_lists_or_comments_load(tmp_path: Path) -> None:
    folder = write_rules(tmp_path, {
        "00-lists.yaml": "version: 1\nlists:\n  nets: [10.0.0.0/8]\n",
        "05-empty.yaml": "# everything commented out for now\n",
        "10-rules.yaml": "version: 1\nrules:\n  - {name: r, when: {context.ip: {in_cidr: nets}},"
                         " drop: true}\n",
    })
    rule_set = load_rule_set(folder, ["main"])
    assert [rule.name for rule in rule_set.rules] == ["r"]
    assert decide(rule_set, ip="10.2.3.4").dropped
