"""First-party _fbp/_fbc: minted, kept, replaced and scoped as docs/meta-capi.md says."""

from __future__ import annotations

import re

import pytest

from gateway.identity.cookies import FirstPartyCookies, browser_cookies

NOW = 1_800_000_000_000
cookies = FirstPartyCookies()


def resolve(host: str = "www.example.com", *, jar: dict[str, str] | None = None,
            secure: bool = True, **params: str):  # type: ignore[no-untyped-def]
    return cookies.resolve(host=host, secure=secure, cookies=jar or {}, params=params,
                           now_ms=NOW)


def test_mints_fbp_when_the_visitor_has_none() -> None:
    ids = resolve()
    assert ids.fbp is not None
    match = re.fullmatch(r"fb\.1\.(\d+)\.(\d+)", ids.fbp)
    assert match and int(match.group(1)) == NOW and 0 < int(match.group(2)) <= 2147483647
    assert ids.to_set == {"_fbp": ids.fbp}
    assert ids.domain == "example.com" and ids.secure


def test_keeps_and_refreshes_an_existing_fbp_including_an_appendix() -> None:
    ids = resolve(jar={"_fbp": "fb.1.1700000000000.123.Ab3_-xYz"})
    assert ids.fbp == "fb.1.1700000000000.123.Ab3_-xYz"
    assert ids.to_set["_fbp"] == ids.fbp


def test_fbp_parameter_is_used_when_the_cookie_is_missing() -> None:
    assert resolve(fbp="fb.1.1700000000000.99").fbp == "fb.1.1700000000000.99"


def test_garbage_fbp_is_replaced() -> None:
    ids = resolve(jar={"_fbp": "hello"})
    assert ids.fbp is not None and ids.fbp.startswith(f"fb.1.{NOW}.")


def test_fbclid_in_page_url_becomes_fbc_unchanged() -> None:
    ids = resolve(dl="https://www.example.com/p?utm=x&fbclid=IwAR2F-aBc_123")
    assert ids.fbc == f"fb.1.{NOW}.IwAR2F-aBc_123"
    assert ids.to_set["_fbc"] == ids.fbc


def test_fbclid_from_referrer_when_page_url_has_none() -> None:
    ids = resolve(dl="https://www.example.com/p", rl="https://www.example.com/?fbclid=RefClick")
    assert ids.fbc == f"fb.1.{NOW}.RefClick"


def test_same_fbclid_keeps_the_cookie_and_its_creation_time() -> None:
    existing = "fb.1.1700000000000.IwAR_same"
    ids = resolve(jar={"_fbc": existing}, dl="https://www.example.com/?fbclid=IwAR_same")
    assert ids.fbc == existing


def test_same_fbclid_with_an_appendix_is_kept() -> None:
    existing = "fb.1.1700000000000.IwAR_same.AQ"
    ids = resolve(jar={"_fbc": existing}, dl="https://www.example.com/?fbclid=IwAR_same")
    assert ids.fbc == existing


def test_new_fbclid_replaces_the_cookie() -> None:
    ids = resolve(jar={"_fbc": "fb.1.1700000000000.IwAR_old"},
                  dl="https://www.example.com/?fbclid=IwAR_new")
    assert ids.fbc == f"fb.1.{NOW}.IwAR_new"


def test_overlong_fbclid_is_ignored() -> None:
    ids = resolve(jar={"_fbc": "fb.1.1700000000000.IwAR_old"},
                  dl="https://www.example.com/?fbclid=" + "a" * 501)
    assert ids.fbc == "fb.1.1700000000000.IwAR_old"
    assert resolve(dl="https://www.example.com/?fbclid=" + "a" * 500).fbc is not None


def test_fbclid_case_is_preserved() -> None:
    assert resolve(dl="https://www.example.com/?fbclid=AbCdEf").fbc == f"fb.1.{NOW}.AbCdEf"


@pytest.mark.parametrize(("host", "domain", "index"), [
    ("www.example.com", "example.com", 1),
    ("example.com", "example.com", 1),
    ("shop.example.co.uk", "example.co.uk", 2),
    ("a.b.example.com.au", "example.com.au", 2),
    ("myshop.myshopify.com", "myshop.myshopify.com", 2),  # a private suffix: no wider
    ("localhost", None, 0),
    ("192.0.2.1", None, 0),
    ("2001:db8::1", None, 0),
])
def test_cookie_domain_is_the_registrable_domain(
    host: str, domain: str | None, index: int
) -> None:
    ids = resolve(host)
    assert ids.domain == domain
    assert ids.fbp is not None and ids.fbp.startswith(f"fb.{index}.")


def test_fixed_and_host_only_domains() -> None:
    fixed = FirstPartyCookies(domain="example.com")
    ids = fixed.resolve(host="shop.example.com", secure=False, cookies={}, params={}, now_ms=NOW)
    assert ids.domain == "example.com"
    other = fixed.resolve(host="example.org", secure=False, cookies={}, params={}, now_ms=NOW)
    assert other.domain is None  # a browser would refuse a cookie for another domain
    host_only = FirstPartyCookies(domain="")
    ids = host_only.resolve(host="shop.example.com", secure=False, cookies={}, params={},
                            now_ms=NOW)
    assert ids.domain is None and ids.fbp is not None and ids.fbp.startswith("fb.2.")


def test_disabled_cookies_still_give_the_event_its_ids() -> None:
    off = FirstPartyCookies(enabled=False)
    ids = off.resolve(host="www.example.com", secure=True, cookies={}, params={
        "dl": "https://www.example.com/?fbclid=Z"}, now_ms=NOW)
    assert ids.fbp and ids.fbc and ids.to_set == {}


@pytest.mark.parametrize("value", [
    "fb.1.1700000000000.123;Domain=evil.example", "fb.1.1700000000000.1 2",
    'fb.1.1700000000000."x"', "fb.1.17000x.123", "fb.1.1700000000000.123.bad;",
    "fb.1.²³.123",  # digits to str.isdigit, not to a cookie
])
def test_values_that_are_not_cookie_safe_are_replaced(value: str) -> None:
    ids = resolve(jar={"_fbp": value, "_fbc": value}, fbp=value, fbc=value)
    assert ids.fbp is not None and ids.fbp.startswith(f"fb.1.{NOW}.")
    assert ids.fbc is None


SITE_COOKIES = (
    "_ga=GA1.1.1234567890.1750000000; OptanonConsent=isGpcEnabled=0&groups=C0001%3A1%2CC0002%3A0;"
    " cart_id=7c9e6679-7425-40de-944b-e07fc1f90ae7; session=eyJhbGciOiJIUzI1NiJ9.e30.abc"
)


@pytest.mark.parametrize(("header", "expected"), [
    (None, {}),
    ("", {}),
    (SITE_COOKIES, {}),
    (f"{SITE_COOKIES}; _fbp=fb.1.1700000000000.42", {"_fbp": "fb.1.1700000000000.42"}),
    (f"_fbc=fb.1.1700000000000.IwAR-x;{SITE_COOKIES};  _fbp = fb.1.1700000000000.42 ",
     {"_fbc": "fb.1.1700000000000.IwAR-x", "_fbp": "fb.1.1700000000000.42"}),
    ('_fbp="fb.1.1700000000000.42"', {"_fbp": "fb.1.1700000000000.42"}),  # quotes dropped
    ("_fbp=fb.1.1.1; _fbp=fb.1.2.2", {"_fbp": "fb.1.2.2"}),  # the last wins
    ("x_fbp=fb.1.1.1; _fbpx=fb.1.1.2; _fbp; _fbc=", {"_fbc": ""}),  # only exact names
])
def test_browser_cookies_reads_only_the_two_ids(
    header: str | None, expected: dict[str, str]
) -> None:
    assert browser_cookies(header) == expected


def test_click_ids_come_from_the_page_url_else_the_referrer_unaltered() -> None:
    from gateway.identity.clickids import click_ids

    page = "https://shop.example/p?ttclid=E.C.P.Ab-9&gclid=Cj0&gclid=second#frag"
    assert click_ids(page, "https://ref.example/?epik=dj0") == {"ttclid": "E.C.P.Ab-9",
                                                               "gclid": "Cj0"}
    assert click_ids("https://shop.example/", "https://ref.example/?ScCid=s1&rdt_cid=r") == {
        "ScCid": "s1", "rdt_cid": "r"}
    assert click_ids("https://shop.example/?xttclid=no&ttclid=" + "x" * 501, None) == {}
    assert click_ids(None, "") == {}
