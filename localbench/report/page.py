"""report/index.html: the report as one self-contained page a person browses.

Everything is inlined (Vega, Vega-Lite and Vega-Embed from vl-convert's bundle, the styles, the script, the data,
PNGs as data URIs): the page opens from disk and requests nothing. It shows the same sections as report.md
(localbench.report.sections), with tables as HTML, charts (localbench.report.charts) in place of the PNGs they
redraw, filters by host, runtime, transport, quant and workload that every table and chart follows, links from
claims and the summary to the cells that decided them, and the calibration, fidelity and drift sections closed.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import markdown
import pandas as pd
import vl_convert

from localbench.core.markdown import fmt
from localbench.report.charts import KEYS, Chart
from localbench.report.sections import Figure, Section, shown

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#222}
header{position:sticky;top:0;background:#f6f8fa;border-bottom:1px solid #ccc;padding:6px 16px;z-index:9}
header label{margin-right:12px;font-size:13px}
main{max-width:1250px;margin:auto;padding:0 16px 40px}
nav a{margin-right:10px;font-size:13px}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0 14px;display:block;overflow-x:auto}
td,th{border:1px solid #ccc;padding:2px 6px;vertical-align:top}
th{background:#f0f0f0;position:sticky;top:0}
tr:target{background:#fff3b0;outline:2px solid #e0a800}
:target,section,details{scroll-margin-top:110px}
details>summary{cursor:pointer;font-size:1.3em;font-weight:600;margin:18px 0 6px}
.chart{margin:10px 0 18px}
img{max-width:100%}
.verdict-ahead,.verdict-supported{color:#106010;font-weight:600}
.verdict-contradicted{color:#a01010;font-weight:600}
"""

SCRIPT = """
const charts = JSON.parse(document.getElementById('chart-data').textContent);
const KEYS = %(keys)s;
window.localbenchViews = {};
const chosen = () => Object.fromEntries(KEYS.map(k => [k, document.getElementById('f-' + k).value]));
const keep = (rec, sel) => KEYS.every(k => !sel[k] || rec[k] === undefined || rec[k] === null || String(rec[k]) === sel[k]);
// a table's filter columns, found by their headers: host, runtime, transport, quant, workload, runtime/transport/quant
function columnsOf(table) {
  const heads = [...table.querySelectorAll('thead th')].map(th => th.textContent.trim());
  const at = {};
  heads.forEach((h, i) => {
    if (KEYS.includes(h)) at[h] = i;
    if (h === 'runtime/transport/quant') at.who = i;
  });
  return [heads, at];
}
function rowKeys(cells, at) {
  const rec = {};
  for (const k of KEYS) if (at[k] !== undefined) rec[k] = cells[at[k]].textContent.trim();
  if (at.who !== undefined) {
    const [runtime, transport, quant] = cells[at.who].textContent.trim().split('/');
    Object.assign(rec, {runtime, transport, quant});
  }
  return rec;
}
function filterTables(sel) {
  for (const table of document.querySelectorAll('main table')) {
    const [heads, at] = columnsOf(table);
    for (const tr of table.querySelectorAll('tbody tr')) {
      tr.hidden = !keep(rowKeys(tr.children, at), sel);
    }
    // matched-cell pivots: one column per cell, named '<workload> <prompt>→<output>'
    heads.forEach((h, i) => {
      const w = h.split(' ')[0];
      if (!h.includes('→') || !charts.workloads.includes(w)) return;
      const hide = sel.workload && w !== sel.workload;
      for (const tr of table.querySelectorAll('tr')) if (tr.children[i]) tr.children[i].hidden = hide;
    });
  }
}
async function filterCharts(sel) {
  for (const c of charts.charts) {
    const view = window.localbenchViews[c.name];
    if (!view) continue;
    const rows = c.data.filter(rec => keep(rec, sel));
    await view.data('rows', rows).runAsync();
  }
}
async function apply() {
  const sel = chosen();
  filterTables(sel);
  await filterCharts(sel);
  document.body.dataset.filtered = JSON.stringify(sel);
}
async function draw() {
  for (const c of charts.charts) {
    const el = document.getElementById('chart-' + c.name);
    const spec = Object.assign({}, c.spec, {datasets: {rows: c.data}});
    const result = await vegaEmbed(el, spec, {actions: false, renderer: 'svg'});
    window.localbenchViews[c.name] = result.view;
  }
  for (const k of KEYS) document.getElementById('f-' + k).addEventListener('change', apply);
  document.body.dataset.ready = 'yes';
}
draw();
"""


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()


def table_html(frame: pd.DataFrame) -> str:
    """A DataFrame as an HTML table: `_id` becomes the row's anchor, `_links` a column of links to cell anchors."""
    if frame.empty:
        return "<p><em>(no rows)</em></p>"
    cols = list(shown(frame).columns)
    links = "_links" in frame
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols) + ("<th>cells</th>" if links else "")
    body = []
    for rec in frame.to_dict("records"):
        anchor = f" id='{html.escape(rec['_id'])}'" if rec.get("_id") else ""
        cells = []
        for c in cols:
            text = html.escape(fmt(rec[c]))
            cls = f" class='verdict-{text.split(' ')[0]}'" if c == "verdict" else ""
            cells.append(f"<td{cls}>{text}</td>")
        if links:
            cells.append("<td>" + " ".join(f"<a class='evidence' href='#{html.escape(a)}'>{html.escape(a.removeprefix('cell-'))}</a>"
                                           for a in (rec["_links"] or [])) + "</td>")
        body.append(f"<tr{anchor}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def block_html(block, charts: dict[str, Chart], placed: set[str]) -> str:
    if isinstance(block, pd.DataFrame):
        return table_html(block)
    if isinstance(block, Figure):
        chart = charts.get(block.png.stem)
        if chart:
            placed.add(chart.name)
            return f"<div class='chart' id='chart-{chart.name}'></div>"
        return f"<figure><img alt='{html.escape(block.title)}' src='{data_uri(block.png)}'></figure>"
    return markdown.markdown(block, extensions=["tables"])


def section_html(s: Section, charts: dict[str, Chart], placed: set[str]) -> str:
    body = "".join(block_html(b, charts, placed) for b in s.blocks)
    title = html.escape(s.title)
    if s.collapsed:
        return f"<details id='{s.id}'><summary>{title}</summary>{body}</details>"
    return f"<section id='{s.id}'><h{s.level}>{title}</h{s.level}>{body}</section>"


def filters(charts: list[Chart], sections: list[Section]) -> str:
    """One choice per filter key, its values taken from the charts' data and the tables."""
    values: dict[str, set] = {k: set() for k in KEYS}
    for c in charts:
        for rec in c.data:
            for k in KEYS:
                if rec.get(k) is not None:
                    values[k].add(str(rec[k]))
    for s in sections:
        for b in s.blocks:
            if isinstance(b, pd.DataFrame):
                for k in KEYS:
                    if k in b:
                        values[k] |= {str(v) for v in b[k].dropna()}
    out = []
    for k in KEYS:
        options = "".join(f"<option>{html.escape(v)}</option>" for v in sorted(values[k]))
        out.append(f"<label>{k} <select id='f-{k}'><option value=''>all</option>{options}</select></label>")
    return "".join(out)


def page(sections: list[Section], charts: list[Chart], title: str) -> str:
    """The whole page as one HTML string."""
    by_name = {c.name: c for c in charts}
    placed: set[str] = set()
    body = [section_html(s, by_name, placed) for s in sections]
    rest = [c for c in charts if c.name not in placed]      # charts with no PNG in any section
    if rest:
        body.insert(2, "<section id='charts'><h2>Interactive figures</h2>"
                    + "".join(f"<div class='chart' id='chart-{c.name}'></div>" for c in rest) + "</section>")
    nav = "".join(f"<a href='#{s.id}'>{html.escape(s.title.split(':')[0].split('(')[0].strip())}</a>"
                  for s in sections[1:])
    workloads = sorted({str(r["workload"]) for c in charts for r in c.data if r.get("workload")})
    data = json.dumps({"charts": [{"name": c.name, "spec": c.spec, "data": c.data} for c in charts],
                       "workloads": workloads}, default=str).replace("</", "<\\/")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><header>{filters(charts, sections)}<nav>{nav}</nav></header>"
            f"<main>{''.join(body)}</main>"
            f"<script type='application/json' id='chart-data'>{data}</script>"
            # modules: each in its own scope, run in order once the page is parsed
            f"<script type='module'>{vl_convert.javascript_bundle()}</script>"
            f"<script type='module'>{SCRIPT % {'keys': json.dumps(KEYS)}}</script></body></html>")
