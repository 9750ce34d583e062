"""`danlu report SWEEP --html FILE`: the report as one self-contained page (no server, no internet: it opens from
a laptop the file was copied to). The table of views/report.py (sortable: click a column's head, or open the page
at `#sort=COLUMN` / `#sort=-COLUMN`), one plot per metric with a line per run coloured by a swept value (hover: run,
step, value), and the tail of each run's log in the page, linked from its row.

A pure function of the report's data and plotly.js's source (the plotting library the page carries inline)."""

from __future__ import annotations

import html
import json
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .report import code_footer, column_label, number_text

# plotly's own qualitative palette (Plotly / D3 category10) for values that are not numbers
PALETTE = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880", "#ff97ff", "#fecb52"]
# Viridis at 8 stops (its last, light yellow, left out: it hardly shows on white), for numbers in their order
VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30"]


def colour_key(report: Mapping[str, Any]) -> Optional[str]:
    """The swept key the lines are coloured by: the first that is not the seed, else the seed."""
    keys = list(report["keys"])
    return next((k for k in keys if k != report.get("seed_key")), keys[0] if keys else None)


def colours(values: Sequence[Optional[str]]) -> Dict[Optional[str], str]:
    """A colour per distinct value: a sequential scale in numeric order where every value is a number, the
    qualitative palette in order of appearance otherwise."""
    distinct = list(dict.fromkeys(values))

    def number(v: Optional[str]) -> Optional[float]:
        try:
            return float(v) if v is not None else None
        except ValueError:
            return None

    if distinct and all(number(v) is not None for v in distinct):
        ordered = sorted(distinct, key=lambda v: number(v) or 0.0)
        n = len(ordered)
        return {
            v: VIRIDIS[round(i * (len(VIRIDIS) - 1) / (n - 1)) if n > 1 else len(VIRIDIS) // 2]
            for i, v in enumerate(ordered)
        }
    return {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(distinct)}


def figures(report: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """One plotly figure (data + layout) per metric, the ranked metric first; a line per run that wrote it."""
    names = list(
        dict.fromkeys(
            ([report["metric"]] if report["metric"] else []) + [n for r in report["runs"] for n in r["series"]]
        )
    )
    key = colour_key(report)
    palette = colours([r["values"].get(key) for r in report["runs"]]) if key else {}
    out = []
    for name in names:
        traces = []
        for r in report["runs"]:
            s = r["series"].get(name)
            if not s or not len(s.steps):
                continue
            value = r["values"].get(key) if key else None
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": r["run"] + (f" ({column_label(report['keys'], key)}={value})" if key else ""),
                    "x": list(s.steps),
                    "y": list(s.values),
                    "meta": r["run"],
                    "line": {"color": palette.get(value, PALETTE[0]), "width": 3 if r.get("best_run") else 1.5},
                    "hovertemplate": "run %{meta}<br>step %{x}<br>" + html.escape(name) + " %{y}<extra></extra>",
                }
            )
        if traces:
            out.append(
                {
                    "metric": name,
                    "data": traces,
                    "layout": {
                        "title": {"text": name},
                        "xaxis": {"title": {"text": "step"}},
                        "yaxis": {"title": {"text": name}},
                        "hovermode": "closest",
                        "margin": {"t": 50, "r": 20, "b": 50, "l": 70},
                        "height": 380,
                        "legend": {"font": {"size": 10}},
                    },
                }
            )
    return out


def _cell(text: str, sort: Optional[Any] = None) -> str:
    attr = "" if sort is None else f' data-v="{html.escape(json.dumps(sort), quote=True)}"'
    return f"<td{attr}>{html.escape(text)}</td>"


def _table(table_id: str, head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    heads = "".join(f'<th data-col="{html.escape(h.lower())}">{html.escape(h)}</th>' for h in head)
    return (
        f'<table id="{table_id}" class="sortable"><thead><tr>{heads}</tr></thead><tbody>'
        + "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
        + "</tbody></table>"
    )


def _value_cell(v: Optional[str]) -> str:
    """A swept value's cell, sorted as a number where it is one."""
    try:
        sort: Any = float(v) if v is not None else None
    except ValueError:
        sort = v
    return _cell("" if v is None else str(v), sort)


def _run_row(r: Mapping[str, Any], keys: Sequence[str], anchor: str) -> List[str]:
    """A run's cells: best mark, name, swept values, state, steps, last and best value and its step, a link to its
    log."""
    return (
        [
            _cell("*" if r["best_run"] else "", 1 if r["best_run"] else 0),
            _cell(r["run"] + ("*" if r.get("code_differs") else ""), r["run"]),
        ]
        + [_value_cell(r["values"].get(k)) for k in keys]
        + [
            _cell(r["state"], r["state"]),
            _cell(str(r["steps"]), r["steps"]),
            _cell(number_text(r["last"]), r["last"]),
            _cell(number_text(r["best"]), r["best"]),
            _cell("-" if r["best_step"] is None else str(r["best_step"]), r["best_step"]),
            f'<td><a href="#{anchor}">logs</a></td>',
        ]
    )


def _runs_table(report: Mapping[str, Any], anchors: Mapping[str, str]) -> str:
    """The table of runs, a row per run."""
    keys, metric = list(report["keys"]), report["metric"] or "-"
    head = (
        ["best", "run"]
        + [column_label(keys, k) for k in keys]
        + ["state", "steps", f"last({metric})", f"best({metric})", "at", "logs"]
    )
    return _table("runs", head, [_run_row(r, keys, anchors[r["run"]]) for r in report["runs"]])


def _points_section(report: Mapping[str, Any]) -> List[str]:
    """The heading and table of the sweep's points over seeds (none without points)."""
    if not report["points"]:
        return []
    keys, metric = list(report["keys"]), report["metric"] or "-"
    others = [k for k in keys if k != report["seed_key"]]
    phead = ["best"] + [column_label(keys, k) for k in others] + ["seeds", f"mean({metric})", "std"]
    prows = [
        [_cell("*" if p["best_point"] else "", 1 if p["best_point"] else 0)]
        + [_cell(str(p["values"].get(k, "")), p["values"].get(k)) for k in others]
        + [
            _cell(",".join(str(s) for s in p["seeds"])),
            _cell(number_text(p["mean"]), p["mean"]),
            _cell(number_text(p["std"]), p["std"]),
        ]
        for p in report["points"]
    ]
    return [
        f"<h2>Over seeds ({html.escape(str(report['seed_key']))}): mean &plusmn; std of each run's best "
        f"{html.escape(metric)}</h2>",
        _table("points", phead, prows),
    ]


def _log_details(report: Mapping[str, Any], logs: Mapping[str, str], anchors: Mapping[str, str]) -> str:
    """Each run's log tail, folded, under the anchor its row links to."""
    return "".join(
        f'<details id="{anchors[r["run"]]}"><summary>{html.escape(r["run"])} ({html.escape(r["state"])}): '
        f"the end of its log (<code>danlu logs {html.escape(r['run'])}</code> has all of it)</summary>"
        f"<pre>{html.escape(logs.get(r['run'], '') or '(no log yet)')}</pre></details>"
        for r in report["runs"]
    )


# The page's style sheet.
STYLE = """body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.8em; text-align: left; font-variant-numeric: tabular-nums; }
th { cursor: pointer; background: #f4f4f4; user-select: none; }
th.asc::after { content: " \\25B2"; } th.desc::after { content: " \\25BC"; }
.plot { max-width: 60em; }
pre { background: #f8f8f8; padding: 0.5em; max-height: 30em; overflow: auto; font-size: 0.85em; }
"""

# The page's script: draws the plots, sorts a table by the column clicked (or `#sort=` in the address), opens the log
# an address's `#log-N` names.
SCRIPT = """(function () {
  var figs = JSON.parse(document.getElementById("figures").textContent);
  figs.forEach(function (f, i) {
    Plotly.newPlot("plot-" + i, f.data, f.layout, {displaylogo: false, responsive: true});
  });
  function value(td) {
    return td.hasAttribute("data-v") ? JSON.parse(td.getAttribute("data-v")) : td.textContent;
  }
  function compare(a, b) {
    if (a === b) return 0;
    if (a === null) return 1;
    if (b === null) return -1;
    if (typeof a === "number" && typeof b === "number") return a - b;
    return String(a).localeCompare(String(b));
  }
  function sortBy(table, col, desc) {
    var ths = table.tHead.rows[0].cells, body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r, s) {
      var c = compare(value(r.cells[col]), value(s.cells[col]));
      return desc ? -c : c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    for (var i = 0; i < ths.length; i++) ths[i].className = "";
    ths[col].className = desc ? "desc" : "asc";
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.addEventListener("click", function () { sortBy(table, col, th.className === "asc"); });
    });
  });
  function openLog() {
    var target = location.hash.indexOf("#log-") === 0 && document.getElementById(location.hash.slice(1));
    if (target) target.open = true;
  }
  window.addEventListener("hashchange", openLog);
  openLog();
  var m = /#sort=(-?)(.+)$/.exec(decodeURIComponent(location.hash));
  if (m) {
    var table = document.getElementById("runs");
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      if (th.getAttribute("data-col") === m[2].toLowerCase()) sortBy(table, col, m[1] === "-");
    });
  }
})();
"""


def render_html(report: Mapping[str, Any], sweep: str, plotly_js: str, logs: Mapping[str, str], generated: str) -> str:
    """The page. `logs`: run -> the tail of its log (embedded, linked from the run's row); `generated`: when."""
    metric = report["metric"] or "-"
    anchors = {r["run"]: f"log-{i}" for i, r in enumerate(report["runs"])}
    footer = code_footer(report)
    parts = [_runs_table(report, anchors)] + ([f"<p>{html.escape(footer)}</p>"] if footer else [])
    parts += _points_section(report)
    figs = figures(report)
    plots = "".join(
        f'<div class="plot" id="plot-{i}" data-metric="{html.escape(f["metric"])}"></div>' for i, f in enumerate(figs)
    )
    data = json.dumps([{"data": f["data"], "layout": f["layout"]} for f in figs]).replace("</", "<\\/")
    title = f"danlu report: {sweep}"
    library = plotly_js.replace("</script", "<\\/script")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
{STYLE}</style>
<script>{library}</script>
</head><body>
<h1>{html.escape(title)}</h1>
<p>Ranked by <b>{html.escape(metric)}</b> ({html.escape(report["mode"])}); <b>*</b> marks the best run.
Generated {html.escape(generated)}. Click a column's head to sort.</p>
{"".join(parts)}
<h2>Metrics</h2>
{plots}
<h2>Logs</h2>
{_log_details(report, logs, anchors)}
<script type="application/json" id="figures">{data}</script>
<script>
{SCRIPT}</script>
</body></html>
"""
