"""How result objects show themselves in a notebook: a small HTML table, every value escaped.

>>> print(html_table("ingest", [("files", 2), ("source", "<b>x</b>")]))
<table><caption>ingest</caption><tr><th>files</th><td>2</td></tr><tr><th>source</th><td>&lt;b&gt;x&lt;/b&gt;</td></tr></table>
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Any


def html_table(title: str, rows: Iterable[tuple[str, Any]]) -> str:
    """One row per (name, value); names, values and the title are escaped."""
    body = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table><caption>{escape(title)}</caption>{body}</table>"
