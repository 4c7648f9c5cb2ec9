"""The console's tests: a gateway with an admin key, and (for the page) the snippet tests'
Chromium, one per module."""

from __future__ import annotations

from pathlib import Path

from gateway.accesskeys import key_sha256
from gateway.config import parse_settings
from gateway.settings import Settings

from ..conftest import PIXEL_A, destination_yaml, settings_yaml
from ..snippet.conftest import chromium, context

__all__ = ["ADMIN_KEY", "BEARER", "chromium", "console_settings", "context"]

ADMIN_KEY = "the-console-admin-key-for-tests-0123456789"
BEARER = {"Authorization": f"Bearer {ADMIN_KEY}"}


def console_settings(tmp_path: Path, graph_url: str, *, admin: str = "",
                     server: str = "") -> Settings:
    """One destination, `main`, for PIXEL_A at `graph_url`; the admin key ADMIN_KEY (unless
    `admin` gives the section) and no admin listener."""
    admin = admin or f"admin: {{key_sha256: {key_sha256(ADMIN_KEY)}, listen: ''}}\n"
    return parse_settings(
        settings_yaml(tmp_path, destination_yaml("main", graph_url, pixel_id=PIXEL_A),
                      extra=admin + server),
        env={})
