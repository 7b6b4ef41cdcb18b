"""The pieces every polymodal HTML page is built from (the run's ``report.html``, the explain
page, the anomaly report's sections): the style sheet, embedded PNG figures and tables."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

from polymodal.utils.tables import format_value

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.grid{display:flex;flex-wrap:wrap;gap:1rem}.grid figure{margin:0;flex:1 1 480px}figure{margin:.5rem 0}
.scroll{overflow-x:auto}
"""


def embed_png(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def table_html(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """An HTML table, numbers as :func:`~polymodal.utils.tables.format_value` writes them."""
    if not rows:
        return "<p>(none)</p>"
    columns = list(columns or rows[0].keys())

    # a long column name may break after its underscores (accuracy_drop_low), so a table beside a
    # figure fits its half of the page instead of hiding columns behind its scroll bar
    head = "".join(f"<th>{html.escape(str(c)).replace('_', '_<wbr>')}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(format_value(r.get(c)))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"  # a wide table scrolls alone
