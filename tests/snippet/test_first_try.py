"""A first try works: `serve` prints the base code for its own address, and that exact text,
pasted into a page on another (listed) origin, gets the page's events stored."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from gateway.config import parse_settings
from gateway.ingest.basecode import base_code, start_text
from gateway.settings import Settings

from ..conftest import PIXEL_A, destination_yaml, settings_yaml, stored_rows, wait_until
from ..test_serve import free_port, wait_for_ready
from .browser import BrowserThread
from .conftest import base_code as documented_base_code
from .conftest import pages_app
from .pages import open_page

START, END = "<!-- tag-gateway base code -->", "<!-- End tag-gateway base code -->"


async def serve(config: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(config), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def printed_base_code(process: asyncio.subprocess.Process) -> tuple[str, list[str]]:
    """The base code block serve printed, and the lines after it (up to the demo line)."""
    assert process.stdout is not None
    lines: list[str] = []
    while not lines or not lines[-1].startswith("Demo page:"):
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line, f"serve printed no base code: {lines}"
        lines.append(line.decode().rstrip("\n"))
    text = "\n".join(lines)
    block = text[text.index(START):text.index(END) + len(END)] + "\n"
    return block, text[text.index(END) + len(END):].strip().splitlines()


async def stop(process: asyncio.subprocess.Process) -> bytes:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    return output


async def test_the_printed_base_code_pasted_into_a_page_on_another_origin_works(
    chromium: BrowserThread, context: Any, tmp_path: Path, aiohttp_server: Any
) -> None:
    pages: dict[str, str] = {}
    elsewhere = await aiohttp_server(pages_app(pages))  # e.g. http://localhost:8000
    page_origin = str(elsewhere.make_url("")).rstrip("/")
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(settings_yaml(
        tmp_path, destination_yaml("main", "http://127.0.0.1:9", pixel_id=PIXEL_A,
                                   access_token=""),
        extra=f"server: {{port: {port}, path_prefix: /gw, allowed_origins: [{page_origin}]}}\n",
    ))
    settings = parse_settings(config.read_text(), env={})
    process = await serve(config)
    try:
        block, after = await printed_base_code(process)
        assert f"'http://127.0.0.1:{port}/gw/gw.js'" in block
        assert f"fbq('init', '{PIXEL_A}');" in block
        assert after == [
            f"Pages on another origin must be listed in server.allowed_origins (now: "
            f"{page_origin}).", f"Demo page: http://127.0.0.1:{port}/gw/demo (server.demo)"]
        await wait_for_ready(f"http://127.0.0.1:{port}/gw/readyz", process)
        pages["mine"] = f"<!doctype html><html><head><meta charset='utf-8'>\n{block}</head>" \
                        "<body><h1>My page</h1></body></html>"
        url = str(elsewhere.make_url("/shop/mine"))
        await chromium.run(open_page(context, url))

        def page_view_stored() -> bool:
            return [(row.event_name, row.pixel_id, row.state) for row in stored_rows(settings)
                    ] == [("PageView", PIXEL_A, "dry_run")]

        await wait_until(page_view_stored, timeout=10)
    finally:
        await stop(process)


async def test_with_several_workers_the_base_code_is_printed_once(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(settings_yaml(
        tmp_path, destination_yaml("main", "http://127.0.0.1:9", pixel_id=PIXEL_A,
                                   access_token=""),
        extra=f"server: {{port: {port}}}\n",
    ))
    process = await serve(config, "--workers", "2")
    try:
        await wait_for_ready(f"http://127.0.0.1:{port}/readyz", process)
    finally:
        output = (await stop(process)).decode()
    assert output.count(START) == 1 and output.count("Demo page:") == 1
    assert f"'http://127.0.0.1:{port}/gw.js'" in output


def test_the_documented_base_code_is_the_one_serve_prints() -> None:
    assert base_code() == f"{START}\n{documented_base_code()}{END}\n"


def test_without_a_known_pixel_the_placeholder_is_named(one_destination: Settings) -> None:
    every_pixel = tuple(replace(d, accepts=None) for d in one_destination.destinations)
    server = replace(one_destination.server, host="0.0.0.0", port=9000, demo=False)
    text = start_text(replace(one_destination, destinations=every_pixel, server=server))
    assert text.splitlines()[0] == ("Paste this into the <head> of your pages "
                                    "(docs/snippet.md), with your Meta pixel id for "
                                    "YOUR_PIXEL_ID:")
    assert "'http://127.0.0.1:9000/gw.js'" in text  # every interface: this machine's loopback
    assert "fbq('init', 'YOUR_PIXEL_ID');" in text
    assert "Demo page" not in text and "(now: none)" in text
    assert not re.search("TEST-TOKEN|access_token", text)
