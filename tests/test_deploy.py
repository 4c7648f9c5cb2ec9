"""The shipped multi-node deployment (deploy/): its gateway config passes `tag-gateway check`;
compose.yaml, gateway.yaml and nginx.conf agree (services, ports, the probe's path, the
trusted network, the environment the config reads, the database's names); nginx accepts its
site where nginx is installed. Docker itself is not run here."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import load_settings
from gateway.secretbox import KEY_ENV

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
NODES = ["gateway-1", "gateway-2", "gateway-3"]
# What the entrypoint sets from the password secret: checked below against compose.yaml.
DSN = "postgresql://gateway:not-the-secret@postgres:5432/gateway"


def compose() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return spec


def test_the_shipped_gateway_config_passes_check() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check", "--config", str(DEPLOY / "gateway.yaml")],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "GATEWAY_DATABASE_URL": DSN})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not-the-secret" not in result.stdout + result.stderr


def test_compose_nginx_and_the_gateway_config_agree() -> None:
    spec = compose()
    services = spec["services"]
    config_text = (DEPLOY / "gateway.yaml").read_text()
    settings = load_settings(DEPLOY / "gateway.yaml", env={"GATEWAY_DATABASE_URL": DSN})
    server = settings.server
    assert settings.storage.engine == "postgres" and settings.storage.dsn == DSN
    assert sorted(name for name in services if name.startswith("gateway")) == NODES

    # nginx sends to every node on the config's port under its prefix, and is the only
    # service with a published port.
    site = (DEPLOY / "nginx.conf").read_text()
    assert re.findall(r"server (\S+):(\d+)", site) == [(node, str(server.port)) for node in NODES]
    assert set(re.findall(r"location ~ \^(/[^/(]+)/", site)) == {server.path_prefix}
    # nginx takes every body the gateway takes on each route (a larger one gets nginx's own
    # 413 page instead of the gateway's JSON answer).
    limits = {route: int(size) * {"k": 1024, "m": 2**20}[unit] for route, size, unit in re.findall(
        r"location ~ \^/[^/(]+/\(([^)]*)\)\$ \{\s*client_max_body_size (\d+)([km]);", site)}
    assert limits == {"tr|gw\\.js": server.max_body_bytes,
                      "capi/[^/]+/events|v[0-9.]+/[^/]+/events": server.max_server_body_bytes}
    assert services["nginx"]["ports"] == ["80:80"]
    assert "./nginx.conf:/etc/nginx/conf.d/default.conf:ro" in services["nginx"]["volumes"]
    assert [name for name, service in services.items() if "ports" in service] == ["nginx"]

    # The nodes believe forwarding headers from the network nginx shares with them, and from
    # nowhere else; the database's network leads nowhere else.
    [front] = spec["networks"]["front"]["ipam"]["config"]
    assert server.trusted_proxies == (front["subnet"],)
    assert services["nginx"]["networks"] == ["front"]
    assert services["postgres"]["networks"] == ["db"] and spec["networks"]["db"]["internal"]
    assert settings.admin_listen.startswith("127.0.0.1:")  # inside each container

    postgres = services["postgres"]["environment"]
    for name in NODES:
        node = services[name]
        assert set(node["networks"]) == {"front", "db"}
        probe = " ".join(node["healthcheck"]["test"])
        assert f"http://127.0.0.1:{server.port}{server.path_prefix}/readyz" in probe
        # The config file compose mounts is the one checked here.
        assert node["environment"]["GATEWAY_CONFIG"] == "/app/deploy/gateway.yaml"
        assert "./gateway.yaml:/app/deploy/gateway.yaml:ro" in node["volumes"]
        # Every variable the config needs (no default) is set, every one set is read, and
        # the DSN names the database compose creates.
        entrypoint = " ".join(node["entrypoint"])
        required = set(re.findall(r"\$\{(\w+)\}", config_text))
        assert required == {"GATEWAY_DATABASE_URL"}
        assert ('GATEWAY_DATABASE_URL="postgresql://{user}:$$(cat /run/secrets/db_password)'
                '@postgres:5432/{db}"'.format(user=postgres["POSTGRES_USER"],
                                              db=postgres["POSTGRES_DB"])) in entrypoint
        read = set(re.findall(r"\$\{(\w+)", config_text))
        # The config reads the rest; the gateway reads the key that seals console tokens itself.
        assert KEY_ENV in node["environment"]
        assert set(node["environment"]) - {"GATEWAY_CONFIG", KEY_ENV} <= read
        assert node["secrets"] == ["db_password"]
    assert postgres["POSTGRES_PASSWORD_FILE"] == "/run/secrets/db_password"
    assert spec["secrets"]["db_password"]["file"] == "./secrets/db_password"


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_accepts_the_shipped_site(tmp_path: Path) -> None:
    # The node names resolve on compose's network only: loopback stands in for them here.
    site = (DEPLOY / "nginx.conf").read_text()
    for name in NODES:
        site = site.replace(f"server {name}:", "server 127.0.0.1:")
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{ access_log off; include {tmp_path}/site.conf; }}\n")
    result = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
