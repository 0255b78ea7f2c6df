"""The served HTML: the report with links, galleries of scenes, the decisions waiting.

Every value shown comes from lake files nobody vetted (names, ids, tags, a vendor's text), so
each passes through `html.escape`, and ids in paths are percent-encoded. A page needs nothing
but the server: inline CSS, inline SVG and `data:` images, and one small inline script (with
the response's CSP nonce) that only the buttons use; reading works without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#111827;
background:#f9fafb}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid
#e5e7eb;padding-bottom:4px}
.muted{color:#6b7280;font-size:13px}
nav.fw-nav{background:#111827;color:#e5e7eb;padding:8px 24px;font-size:14px}
nav.fw-nav a{color:#fff;margin-right:14px}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px;margin:8px 0}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e5e7eb}
ul.fw-links{columns:2;font-size:13px}
form.fw-auth{background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:8px 12px;
margin:12px 0;font-size:13px}
form.fw-auth input{margin:0 8px 0 4px}
button{font:inherit;padding:3px 10px;border-radius:4px;border:1px solid #9ca3af;
background:#fff;cursor:pointer}button:disabled{opacity:.5}
button.approve{border-color:#16a34a;color:#166534}button.reject{border-color:#dc2626;
color:#991b1b}
output{margin-left:8px;font-size:12px}
"""

# The buttons: POST with the token (kept in sessionStorage once entered) and the user's name.
SCRIPT = """
(function () {
  var store = window.sessionStorage;
  var form = document.getElementById("fw-auth");
  function shown() {
    var state = document.getElementById("fw-auth-state");
    if (state) {
      state.textContent = store.getItem("fw-token") ? "token entered" : "no token yet";
    }
  }
  if (form) {
    form.elements.user.value = store.getItem("fw-user") || "";
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      store.setItem("fw-token", form.elements.token.value);
      store.setItem("fw-user", form.elements.user.value);
      form.elements.token.value = "";
      shown();
    });
  }
  shown();
  document.querySelectorAll("button[data-action]").forEach(function (button) {
    button.addEventListener("click", function () {
      var out = document.getElementById(button.getAttribute("data-out"));
      var headers = {"Authorization": "Bearer " + (store.getItem("fw-token") || "")};
      var user = store.getItem("fw-user");
      if (user) { headers["X-Flywheel-User"] = user; }
      button.disabled = true;
      fetch(button.getAttribute("data-action"), {method: "POST", headers: headers})
        .then(function (response) {
          return response.json().then(function (body) {
            out.setAttribute("data-status", String(response.status));
            out.textContent = response.ok
              ? (body.state ? body.state : "acknowledged by " + body.by)
              : "error " + response.status + ": " + (body.error || "");
          });
        })
        .catch(function (error) { out.textContent = "error: " + error; })
        .finally(function () { button.disabled = false; });
    });
  });
})();
"""


def href(kind: str, ident: str) -> str:
    """The server's own path of a page: /selections/NAME, /batches/ID, /alerts/ID."""
    return f"/{kind}/{quote(str(ident), safe='')}"


def link(kind: str, ident: str, text: str | None = None) -> str:
    return f'<a href="{escape(href(kind, ident))}">{escape(text or str(ident))}</a>'


def nav() -> str:
    return '<nav class="fw-nav"><a href="/">Report</a><a href="/decisions">Decisions</a></nav>'


# where the script goes: the server redacts a page (a vendor's text may hold a credential) and
# then puts the script in, which would not survive redaction (it writes an Authorization header)
SCRIPT_MARK = "<!--fw-script-->"


def script(nonce: str) -> str:
    return f'<script nonce="{escape(nonce)}">{SCRIPT}</script>'


def page(title: str, body: str, nonce: str = "") -> str:
    """A whole page around `body` (already HTML), the script's place marked."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)}</title><link rel="icon" href="data:,"><style>{CSS}</style>'
        "</head><body>"
        f"{nav()}<main>{body}</main>{SCRIPT_MARK}</body></html>"
    )


def auth_form(token_set: bool) -> str:
    """Where the person enters the token the buttons carry."""
    if not token_set:
        return (
            '<p class="muted" id="fw-no-token">Actions are off: the server has no '
            "<code>FLYWHEEL_SERVE_TOKEN</code>.</p>"
        )
    return (
        '<form class="fw-auth" id="fw-auth" autocomplete="off">'
        '<label>Token<input id="fw-token" name="token" type="password" required></label>'
        '<label>Your name<input id="fw-user" name="user" type="text" maxlength="100"></label>'
        '<button type="submit">Use token</button> '
        '<span class="muted" id="fw-auth-state"></span></form>'
    )


class Buttons:
    """Action buttons; those before an `output()` show their answer in it."""

    def __init__(self) -> None:
        self.n = 1

    def __call__(self, path: str, label: str, css: str) -> str:
        return (
            f'<button type="button" class="{css}" data-action="{escape(path)}" '
            f'data-out="fw-out-{self.n}">{escape(label)}</button>'
        )

    def output(self) -> str:
        self.n += 1
        return f'<output id="fw-out-{self.n - 1}" data-result></output>'


def decisions(
    pending: Sequence[Mapping[str, Any]],
    alerts: Sequence[Mapping[str, Any]],
    token_set: bool,
    buttons: Buttons | None = None,
    only: str | None = None,
) -> str:
    """Batches waiting for approval (Approve, Reject) and active alerts (Acknowledge); `only`
    "batches" or "alerts" shows one of the two."""
    buttons = buttons or Buttons()
    rows = []
    for b in pending:
        api = f"/api/batches/{quote(str(b['batch_id']), safe='')}"
        cells = (
            f"<td>{link('batches', b['batch_id'])}</td><td>{escape(str(b['vendor']))}</td>"
            f"<td>{escape(str(b['selection']))}</td><td>{int(b['tasks'])}</td>"
            f"<td>{float(b['cost']):,.2f}</td><td>"
            + buttons(f"{api}/approve", "Approve", "approve")
            + " "
            + buttons(f"{api}/reject", "Reject", "reject")
            + buttons.output()
            + "</td>"
        )
        rows.append(f'<tr data-batch-id="{escape(str(b["batch_id"]))}">{cells}</tr>')
    batches = (
        "<table><thead><tr><th>batch</th><th>vendor</th><th>selection</th><th>tasks</th>"
        f"<th>cost USD</th><th></th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        if rows
        else '<p class="muted">No batch is waiting for approval.</p>'
    )
    items = []
    for a in alerts:
        api = f"/api/alerts/{quote(str(a['id']), safe='')}/ack"
        items.append(
            f'<tr data-alert-id="{escape(str(a["id"]))}"><td>{link("alerts", a["id"])}</td>'
            f"<td>{escape(str(a['title']))}</td><td>{int(a.get('count') or 0)}</td><td>"
            + buttons(api, "Acknowledge", "ack")
            + buttons.output()
            + "</td></tr>"
        )
    alert_table = (
        "<table><thead><tr><th>alert</th><th>what</th><th>entities</th><th></th></tr></thead>"
        f"<tbody>{''.join(items)}</tbody></table>"
        if items
        else '<p class="muted">No active alert.</p>'
    )
    parts = ['<section id="decisions"><h2>Waiting for a decision</h2>', auth_form(token_set)]
    if only != "alerts":
        parts.append(f"<h3>Batches waiting for approval ({len(pending)})</h3>{batches}")
    if only != "batches":
        parts.append(f"<h3>Active alerts ({len(alerts)})</h3>{alert_table}")
    return "".join(parts) + "</section>"


def browse(
    alerts: Sequence[Mapping[str, Any]],
    acknowledged: Sequence[Mapping[str, Any]],
    selections: Iterable[str],
    batches: Sequence[Mapping[str, Any]],
) -> str:
    """Plain links to every gallery: alerts, selections, batches."""

    def listing(items: list[str], empty: str) -> str:
        if not items:
            return f'<p class="muted">{escape(empty)}</p>'
        return '<ul class="fw-links">' + "".join(f"<li>{i}</li>" for i in items) + "</ul>"

    alert_links = [
        f"{link('alerts', a['id'])} <span class='muted'>{escape(str(a['title']))}</span>"
        for a in [*alerts, *acknowledged]
    ]
    batch_links = [
        f"{link('batches', b['batch_id'])} <span class='muted'>{escape(str(b['state']))}</span>"
        for b in batches
    ]
    return (
        '<section id="browse"><h2>Scenes behind the numbers</h2>'
        f"<h3>Alerts</h3>{listing(alert_links, 'No alert.')}"
        f"<h3>Selections</h3>{listing([link('selections', s) for s in selections], 'None saved.')}"
        f"<h3>Batches</h3>{listing(batch_links, 'No batch yet.')}</section>"
    )


def home(report_html: str, extra: str, nonce: str) -> str:
    """The report's own page with the navigation, `extra` sections and the script added."""
    out = report_html.replace("<body>", f"<body>{nav()}", 1)
    out = out.replace("<main>", f"<main>{extra}", 1)
    out = out.replace("</head>", f'<link rel="icon" href="data:,"><style>{CSS}</style></head>', 1)
    return out.replace("</body>", f"{SCRIPT_MARK}</body>", 1)


def facts(rows: Sequence[tuple[str, object]]) -> str:
    body = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape('' if v is None else str(v))}</td></tr>"
        for k, v in rows
    )
    return f'<table class="fw-facts">{body}</table>'


def table(records: Sequence[Mapping[str, Any]], columns: Sequence[str], limit: int = 200) -> str:
    """Rows of a frame as a table (the first `limit`)."""
    head = "".join(f"<th>{escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{escape('' if r.get(c) is None else str(r.get(c)))}</td>" for c in columns)
        + "</tr>"
        for r in records[:limit]
    )
    more = f'<p class="muted">and {len(records) - limit} more</p>' if len(records) > limit else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def gallery_page(
    title: str, kind: str, summary: str, gallery_html: str, n: int, nonce: str, actions: str = ""
) -> str:
    """A page of scenes: what they are behind, the actions, the gallery."""
    body = (
        f'<h1>{escape(title)}</h1><p class="muted">{escape(kind)} · {n} scenes</p>'
        f"{summary}{actions}<h2>Scenes</h2>{gallery_html}"
    )
    return page(title, body, nonce)


def error_page(status: int, message: str, nonce: str) -> str:
    return page(f"{status}", f'<h1>{status}</h1><p id="fw-error">{escape(message)}</p>', nonce)
