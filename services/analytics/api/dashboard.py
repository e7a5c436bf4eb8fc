"""The HQ dashboard page: server-rendered HTML (labels in the chosen language) plus a small
vanilla script that polls `/v1/overview` and draws its charts as inline SVG. No third-party
code, nothing fetched from a CDN."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse

STATIC = Path(__file__).with_name("static")
Lang = Literal["en", "zh-CN"]

# Labels rendered by the server (the script carries the same table for what it draws).
LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "OptiSync HQ: bookings per store",
        "region": "Region", "store": "Store", "all": "All", "from": "From", "to": "To",
        "granularity": "Granularity", "day": "Day", "week": "Week", "month": "Month",
        "csv": "Export CSV", "live": "live", "updated": "updated",
        "volume": "Volumes over time", "rates": "Rates over time",
        "regions": "Regions", "stores": "Stores", "best_conversion": "Best conversion",
        "worst_cancellation": "Highest cancellation rate", "abnormal": "Abnormal stores",
        "chain": "Chain overview",
    },
    "zh-CN": {
        "title": "OptiSync 总部：各门店预约", "region": "区域", "store": "门店", "all": "全部",
        "from": "开始", "to": "结束", "granularity": "粒度", "day": "日", "week": "周",
        "month": "月", "csv": "导出 CSV", "live": "实时", "updated": "更新于",
        "volume": "数量趋势", "rates": "比率趋势", "regions": "区域", "stores": "门店",
        "best_conversion": "转化率最高", "worst_cancellation": "取消率最高",
        "abnormal": "异常门店", "chain": "连锁总览",
    },
}  # fmt: skip

PAGE = """<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="/dashboard/static/dashboard.css">
</head>
<body>
<header>
  <h1>{title}</h1>
  <nav class="langs"><a href="?lang=en" data-lang="en">English</a> · <a href="?lang=zh-CN"
    data-lang="zh-CN">中文</a></nav>
  <form id="filters">
    <label>{region} <select name="region"><option value="">{all}</option></select></label>
    <label>{store} <select name="store_id"><option value="">{all}</option></select></label>
    <label>{from} <input type="date" name="from"></label>
    <label>{to} <input type="date" name="to"></label>
    <label>{granularity} <select name="granularity">
      <option value="day">{day}</option><option value="week">{week}</option>
      <option value="month">{month}</option></select></label>
    <a id="csv" class="button" href="/v1/kpis.csv">{csv}</a>
  </form>
  <p class="status"><span id="live" class="dot"></span> {live} · {updated}
    <time id="updated">–</time></p>
</header>
<main>
  <section><h2>{chain}</h2><div id="cards" class="cards"></div></section>
  <section class="charts">
    <figure><figcaption>{volume}</figcaption><div id="chart-volume" class="chart"></div></figure>
    <figure><figcaption>{rates}</figcaption><div id="chart-rates" class="chart"></div></figure>
  </section>
  <section class="lists">
    <div><h2>{best_conversion}</h2><ol id="best-conversion"></ol></div>
    <div><h2>{worst_cancellation}</h2><ol id="worst-cancellation"></ol></div>
    <div><h2>{abnormal}</h2><ul id="abnormal"></ul></div>
  </section>
  <section><h2>{regions}</h2><div class="table"><table id="regions"></table></div></section>
  <section><h2>{stores}</h2><div class="table"><table id="stores"></table></div></section>
</main>
<script id="config" type="application/json">{config}</script>
<script src="/dashboard/static/dashboard.js"></script>
</body>
</html>
"""

router = APIRouter(tags=["dashboard"], include_in_schema=False)


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(request: Request, lang: Annotated[Lang, Query()] = "en") -> HTMLResponse:
    settings = request.app.state.settings
    labels = {k: html.escape(v) for k, v in LABELS[lang].items()}
    config = json.dumps({"lang": lang, "refreshMs": settings.dashboard_refresh_ms})
    return HTMLResponse(PAGE.format(lang=lang, config=config.replace("<", "\\u003c"), **labels))


@router.get("/", response_class=HTMLResponse)
async def root(request: Request, lang: Annotated[Lang, Query()] = "en") -> HTMLResponse:
    return await dashboard(request, lang)


@router.get("/dashboard/static/{name}")
async def static(name: Literal["dashboard.js", "dashboard.css"]) -> FileResponse:
    media = "text/javascript" if name.endswith(".js") else "text/css"
    return FileResponse(STATIC / name, media_type=media, headers={"cache-control": "no-cache"})
