"""The dashboard page is complete in both languages and ships no third-party code."""

from __future__ import annotations

import re

from services.analytics.api.dashboard import LABELS, PAGE, STATIC


def test_both_languages_label_everything_the_page_shows() -> None:
    placeholders = set(re.findall(r"\{([a-z_]+)\}", PAGE)) - {"lang", "config"}
    assert placeholders <= set(LABELS["en"]) == set(LABELS["zh-CN"])
    script = (STATIC / "dashboard.js").read_text()
    tables = re.findall(r'^  (en|"zh-CN"): \{(.*?)^  \},', script, re.S | re.M)
    keys = [set(re.findall(r"(\w+):", body)) for _, body in tables]
    assert len(keys) == 2 and keys[0] == keys[1]


def test_no_external_resources() -> None:
    texts = [PAGE, *(p.read_text() for p in STATIC.iterdir())]
    for text in texts:
        assert not re.search(r"""(src|href)=["']?https?://""", text)
        assert "import " not in text.split("\n", 1)[0]
