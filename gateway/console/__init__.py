"""The operator console: `{prefix}/admin/`, a page served by the gateway, and the JSON API under
`{prefix}/admin/api/` it uses (docs/console.md).

- routes.py: the page, sign-in and sign-out, and the API's routes;
- guard.py: who may use the API (session cookie + CSRF header on writes, or the admin key as
  a bearer token);
- sessions.py: sessions kept in the store, and their CSRF tokens; signins.py: wrong sign-ins
  throttled per address and logged a few at a time;
- accesskeys.py: the server ingress's access keys made, listed and revoked in the console;
- api.py: the JSON answers; stream.py: the live events (server-sent events);
- destinations.py: destinations added in the console, their sealed write-only tokens.
"""

from __future__ import annotations

from .destinations import follow_console_destinations
from .routes import add_console_routes

__all__ = ["add_console_routes", "follow_console_destinations"]
