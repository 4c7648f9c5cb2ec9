"""The base code a site pastes into its pages, for this gateway's own address (docs/snippet.md).

`tag-gateway serve` prints it at start with the absolute URL of the script, so the first page
someone tries loads `gw.js` from the gateway, not from the page's own origin; the demo page
uses the same code. docs/snippet.md shows the same block with the placeholders (a test keeps
the two equal).
"""

from __future__ import annotations

from ..settings import ServerSettings, Settings

__all__ = ["PLACEHOLDER_PIXEL", "PLACEHOLDER_SCRIPT", "base_code", "known_pixel", "origin",
           "start_text"]

PLACEHOLDER_SCRIPT = "/gw.js"
PLACEHOLDER_PIXEL = "YOUR_PIXEL_ID"
# The values put in are safe inside the quotes: config validation allows no quote, backslash
# or angle bracket in the host, the prefix or the script name, and pixel ids are digits.
_TEMPLATE = """\
<!-- tag-gateway base code -->
<script>
!function(w,d,u,n,t,e){if(w.fbq)return;n=w.fbq=function(){n.callMethod?
n.callMethod.apply(n,arguments):n.queue.push(arguments)};if(!w._fbq)w._fbq=n;
n.push=n;n.loaded=!0;n.version='2.0';n.queue=[];t=d.createElement('script');
t.async=!0;t.src=u;e=d.getElementsByTagName('script')[0];
e.parentNode.insertBefore(t,e)}(window,document,'{script}');
fbq('init', '{pixel}');
fbq('track', 'PageView');
</script>
<!-- End tag-gateway base code -->
"""
# Addresses that mean "every interface": a browser on this machine reaches them on loopback.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "[::]": "[::1]"}


def base_code(script: str = PLACEHOLDER_SCRIPT, pixel: str = PLACEHOLDER_PIXEL) -> str:
    return _TEMPLATE.replace("{script}", script).replace("{pixel}", pixel)


def origin(server: ServerSettings) -> str:
    """`http://host:port` as a browser on this machine reaches the gateway."""
    host = _WILDCARDS.get(server.host, server.host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{server.port}"


def known_pixel(settings: Settings) -> str | None:
    """The first pixel id a destination names (in config order), if any does."""
    for destination in settings.destinations:
        if destination.accepts:
            return sorted(destination.accepts)[0]
    return None


def start_text(settings: Settings) -> str:
    """What `serve` prints once it listens: the base code to paste, and the demo page."""
    server = settings.server
    base = origin(server) + server.path_prefix
    pixel = known_pixel(settings)
    head = "Paste this into the <head> of your pages (docs/snippet.md)"
    if pixel is None:
        head += f", with your Meta pixel id for {PLACEHOLDER_PIXEL}"
    lines = [head + ":",
             base_code(f"{base}/{server.script_name}", pixel or PLACEHOLDER_PIXEL).rstrip(),
             "Pages on another origin must be listed in server.allowed_origins (now: "
             f"{', '.join(server.allowed_origins) or 'none'})."]
    if server.serves_demo:
        lines.append(f"Demo page: {base}/demo (server.demo)")
    return "\n".join(lines)
