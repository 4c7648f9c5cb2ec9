"""Named sets of proxy address ranges for `server.trusted_proxies`.

`cloudflare` is Cloudflare's published list (cloudflare.com/ips-v4 and /ips-v6, checked
2026-11). Providers change these lists rarely but they do change: compare with the published
list when upgrading, or write the CIDRs out in config.yaml. CloudFront and Fastly publish long
lists behind APIs (ip-ranges.amazonaws.com, api.fastly.com/public-ip-list); put their CIDRs in
config.yaml directly (docs/deploy-behind-a-cdn.md shows how).
"""

from __future__ import annotations

__all__ = ["PRESETS"]

PRESETS: dict[str, tuple[str, ...]] = {
    "cloudflare": (
        "173.245.48.0/20", "103.21.244.0/22", "103.22.200.0/22", "103.31.4.0/22",
        "141.101.64.0/18", "108.162.192.0/18", "190.93.240.0/20", "188.114.96.0/20",
        "197.234.240.0/22", "198.41.128.0/17", "162.158.0.0/15", "104.16.0.0/13",
        "104.24.0.0/14", "172.64.0.0/13", "131.0.72.0/22",
        "2400:cb00::/32", "2606:4700::/32", "2803:f800::/32", "2405:b500::/32",
        "2405:8100::/32", "2a06:98c0::/29", "2c0f:f248::/32",
    ),
    # A reverse proxy on the same host (nginx, Caddy) or in a private network / cluster.
    "loopback": ("127.0.0.0/8", "::1/128"),
    "private": (
        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10",
        "127.0.0.0/8", "fc00::/7", "fe80::/10", "::1/128",
    ),
}
