"""Page shells and static files, read once from the package (no template engine: the shells
are tiny and the JavaScript renders the rest)."""

from __future__ import annotations

import gzip
import hashlib
import html
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from string import Template
from typing import Any

import orjson

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes  # compressed once: the files never change while the process runs
    media_type: str
    etag: str


@cache
def static(name: str) -> Asset | None:
    path = STATIC / name
    if "/" in name or name.startswith(".") or path.suffix not in _TYPES or not path.is_file():
        return None
    body = path.read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
    return Asset(body, gzip.compress(body, 9, mtime=0), _TYPES[path.suffix], etag)


def asset_url(name: str) -> str:
    asset = static(name)
    if asset is None:
        raise LookupError(name)
    return f"/pages/static/{name}?v={asset.etag.strip(chr(34))}"


@cache
def _template(name: str) -> Template:
    return Template((TEMPLATES / f"{name}.html").read_text(encoding="utf-8"))


def _json_for_script(data: Any) -> str:
    # `<` escaped: nothing in the data can close the script element.
    return orjson.dumps(data).decode().replace("<", "\\u003c")


def render_page(name: str, *, locale: str, title: str, boot: dict[str, Any]) -> str:
    body = _template(name).substitute()
    return _template("base").substitute(
        lang=html.escape(locale),
        title=html.escape(title),
        css=asset_url("app.css"),
        common=asset_url("common.js"),
        script=asset_url(f"{name}.js"),
        boot=_json_for_script({**boot, "locale": locale}),
        body=body,
    )


def render_message(*, locale: str, title: str, text: str, refresh_s: int | None = None) -> str:
    """A one-message page; with `refresh_s` the browser reloads it by itself after that long
    (a 503 that asks to retry)."""
    refresh = "" if refresh_s is None else f'<meta http-equiv="refresh" content="{refresh_s}">\n'
    return _template("message").substitute(
        lang=html.escape(locale),
        title=html.escape(title),
        refresh=refresh,
        css=asset_url("app.css"),
        text=html.escape(text),
    )
