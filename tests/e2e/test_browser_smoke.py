"""The browser fixture drives Debian's chromium: it renders a page served on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from playwright.async_api import Browser

from tests.support.http import running_app

PAGE = """<html><body><button onclick="this.textContent='clicked'">go</button></body></html>"""


async def test_chromium_renders_a_local_page(browser: Browser, artifacts_dir: Path) -> None:
    app = FastAPI()

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return PAGE

    async with running_app(app) as base_url:
        page = await browser.new_page()
        await page.goto(base_url)
        await page.click("button")
        assert await page.text_content("button") == "clicked"
        await page.screenshot(path=str(artifacts_dir / "browser-smoke.png"))
        await page.close()
