"""The status page: status rows -> one self-refreshing HTML document, no script, all escaped.

Everything shown comes from operators (channel names, folders) or from upstream and package
files (messages, quarantine reasons), so every value goes through `_e` before it is placed in
text or in an attribute. The document carries no script at all; the server also sends a
Content-Security-Policy that forbids one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from html import escape
from types import MappingProxyType

from mirror.core.dangling import Dangling
from mirror.health.status import DROPS_ROW, SOURCE_LOCAL, format_size, format_time, format_via
from mirror.reports import DropFolderStatus, SubdirStatus

STATE_OK = "ok"
STATE_FAILED = "failed"
STATE_WARNING = "warning"  # guarded, interrupted, or an outcome this page does not know
STATE_NEVER = "never"  # no run recorded yet
_OUTCOME_STATES = MappingProxyType(
    {
        "ok": STATE_OK,
        "unchanged": STATE_OK,
        "imported": STATE_OK,
        "failed": STATE_FAILED,
        "guarded": STATE_WARNING,
        "interrupted": STATE_WARNING,
    }
)
_EMPTY_NAME = '""'  # a subdir named "" would otherwise be an invisible blank cell
_SEVERITY = (STATE_NEVER, STATE_OK, STATE_WARNING, STATE_FAILED)
_COLUMNS = (
    "Subdir",
    "Packages",
    "Size",
    "Last sync",
    "Outcome",
    "Repodata source",
    "Solvable",
    "Quarantined",
)

_STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
  color:#1d232a;background:#f4f6f8}
header{background:#1d232a;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#c9d1d9}
header a{color:#9ecbff}
main{padding:8px 24px 32px;max-width:1400px}
.summary{font-weight:600}
.channel{background:#fff;border:1px solid #d0d7de;border-left:6px solid #8c959f;
  border-radius:6px;margin:18px 0;padding:12px 16px}
.channel.state-ok{border-left-color:#2e7d32}
.channel.state-warning{border-left-color:#c77700}
.channel.state-failed{border-left-color:#c62828}
.channel h2{margin:0 0 6px;font-size:19px;overflow-wrap:anywhere}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:6px 0 10px}
dl.facts dt{color:#57606a}
dl.facts dd{margin:0;overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eaeef2;vertical-align:top}
thead th{font-size:13px;color:#57606a;border-bottom:2px solid #d0d7de}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tbody th,td.num,td.when,td.outcome,td.solvable{white-space:nowrap}
td.source{font-family:ui-monospace,monospace;font-size:13px;overflow-wrap:anywhere}
tr.subdir.state-failed{background:#fdecea}
tr.detail.state-failed{background:#fdecea}
tr.detail td{border-bottom:1px solid #d0d7de;padding-top:0}
.badge{display:inline-block;padding:0 8px;border-radius:10px;font-size:13px;font-weight:600;
  background:#eaeef2;color:#424a53}
.badge.ok{background:#e6f4ea;color:#1b5e20}
.badge.warning{background:#fff4e5;color:#8a4b00}
.badge.failed{background:#c62828;color:#fff}
.message,.problem{white-space:pre-wrap;overflow-wrap:anywhere;margin:4px 0;
  font-family:ui-monospace,monospace;font-size:13px}
.message.failed{color:#8e1b1b;font-weight:600}
.no{color:#c62828;font-weight:600}
.ago{color:#57606a;font-size:13px}
ul{margin:4px 0;padding-left:20px}
code{font-family:ui-monospace,monospace;font-size:13px;overflow-wrap:anywhere}
.muted{color:#57606a}
"""


def render_status_page(rows: Sequence[SubdirStatus], *, now: float, refresh_s: int = 30) -> str:
    """The whole document for `rows` (as `collect_status` returns them) at time `now`."""
    channels: dict[str, list[SubdirStatus]] = {}
    for row in rows:
        channels.setdefault(row.channel, []).append(row)
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="refresh" content="{int(refresh_s)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',  # no favicon request, hence no 404 in the console
        f"<title>mirror status</title><style>{_STYLE}</style></head><body>",
        _header(channels, now, refresh_s),
        "<main>",
    ]
    if not channels:
        parts.append('<p class="muted">Nothing synced, indexed or imported yet.</p>')
    for index, (name, channel_rows) in enumerate(channels.items()):
        parts.append(_channel(index, name, channel_rows, now))
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


def row_state(row: SubdirStatus) -> str:
    """ok | failed | warning | never, from the outcome of the row's last run."""
    if row.last_outcome is None:
        return STATE_NEVER
    return _OUTCOME_STATES.get(row.last_outcome, STATE_WARNING)


def channel_state(rows: Sequence[SubdirStatus]) -> str:
    """The worst state of a channel's rows; unsolvable or incomplete counts as a warning."""
    states = {row_state(r) for r in rows if r.subdir != DROPS_ROW}
    if any(r.solvable is False or r.closure_problems or r.dangling_dependencies for r in rows):
        states.add(STATE_WARNING)
    return max(states or {STATE_NEVER}, key=_SEVERITY.index)


def _header(channels: dict[str, list[SubdirStatus]], now: float, refresh_s: int) -> str:
    states = [channel_state(rows) for rows in channels.values()]
    subdirs = sum(1 for rows in channels.values() for r in rows if r.subdir != DROPS_ROW)
    summary = f"{len(channels)} channels, {subdirs} subdirs"
    failed = sum(1 for rows in channels.values() for r in rows if row_state(r) == STATE_FAILED)
    if failed:
        summary += f"; subdirs whose last sync failed: {failed}"
    warnings = states.count(STATE_WARNING)
    if warnings:
        summary += f"; channels that need attention: {warnings}"
    return (
        "<header><h1>mirror status</h1>"
        f'<p class="summary">{_e(summary)}</p>'
        f"<p>as of {_time(now, now)}; refreshes every {int(refresh_s)} s; "
        '<a href="status.json">status.json</a> · <a href="metrics">metrics</a></p></header>'
    )


def _channel(index: int, name: str, rows: list[SubdirStatus], now: float) -> str:
    state = channel_state(rows)
    local = all(r.repodata_source == SOURCE_LOCAL for r in rows if r.subdir != DROPS_ROW)
    label = "local" if state == STATE_NEVER and local else state
    first = rows[0]
    facts = [
        ("Next run", _time(first.next_run_at, now) if first.next_run_at else "not scheduled"),
        ("Drop folders", _folders(first.drop_folders)),
        ("Closure", _closure(first.closure_problems)),
    ]
    table_rows = "".join(_subdir(row, now) for row in rows)
    return (
        f'<section class="channel state-{state}" id="channel-{index}" '
        f'data-channel="{_e(name)}" data-state="{state}">'
        f'<h2>{_e(name)} {_badge(state, label)}</h2><dl class="facts">'
        + "".join(f"<dt>{term}</dt><dd>{value}</dd>" for term, value in facts)
        + "</dl><table><thead><tr>"
        + "".join(f'<th scope="col">{column}</th>' for column in _COLUMNS)
        + f"</tr></thead><tbody>{table_rows}</tbody></table></section>"
    )


def _source(row: SubdirStatus) -> str:
    """The upstream file, and how the last fetch read it (shards or the full repodata)."""
    if row.repodata_via is None:
        return row.repodata_source or "-"
    return f"{row.repodata_source or '-'} ({format_via(row)} last fetch)"


def _subdir(row: SubdirStatus, now: float) -> str:
    state = row_state(row)
    classes = f"subdir state-{state}" + (" unsolvable" if row.solvable is False else "")
    cells = [
        f'<th scope="row">{_e(row.subdir or _EMPTY_NAME)}</th>',
        f'<td class="num">{row.packages:,}</td>',
        f'<td class="num">{_e(format_size(row.size_bytes))}</td>',
        f'<td class="when">{_time(row.last_sync_at, now) if row.last_sync_at else "-"}</td>',
        f'<td class="outcome">{_outcome(row)}</td>',
        f'<td class="source">{_e(_source(row))}</td>',
        f'<td class="solvable">{_solvable(row.solvable)}</td>',
        f'<td class="num">{row.quarantined}</td>',
    ]
    line = (
        f'<tr class="{classes}" data-subdir="{_e(row.subdir)}" '
        f'data-outcome="{_e(row.last_outcome or "")}">{"".join(cells)}</tr>'
    )
    return line + _detail(row, state)


def _detail(row: SubdirStatus, state: str) -> str:
    """A second line under the row: what went wrong, and what is in quarantine."""
    parts = []
    if row.last_message:
        label = "Sync failed" if state == STATE_FAILED else "Last run"
        parts.append(
            f'<p class="message {state}"><strong>{label}:</strong> {_e(row.last_message)}</p>'
        )
    if row.solve_problem:
        parts.append(f'<p class="problem">Does not solve: {_e(row.solve_problem)}</p>')
    for warning in row.closure_warnings:
        parts.append(f'<p class="message closure-warning">Closure: {_e(warning)}</p>')
    if row.dangling_dependencies:
        names = ", ".join(row.dangling_names)
        found = Dangling(row.dangling_dependencies).records_text
        parts.append(
            f'<p class="message dangling">{found} on packages this channel does not hold: '
            f"{_e(names)}</p>"
        )
    if row.quarantined_files:
        items = "".join(
            f"<li><code>{_e(q.filename)}</code>: {_e(q.reason)}</li>" for q in row.quarantined_files
        )
        more = row.quarantined - len(row.quarantined_files)
        if more > 0:
            items += f'<li class="muted">and {more} more</li>'
        parts.append(f'<div class="quarantine">Quarantined:<ul>{items}</ul></div>')
    if not parts:
        return ""
    return (
        f'<tr class="detail state-{state}" data-subdir="{_e(row.subdir)}">'
        f'<td colspan="{len(_COLUMNS)}">{"".join(parts)}</td></tr>'
    )


def _outcome(row: SubdirStatus) -> str:
    if row.subdir == DROPS_ROW:
        return '<span class="muted">rejected drops</span>'
    if row.last_outcome is None and row.repodata_source == SOURCE_LOCAL:
        return '<span class="muted">not synced: local</span>'  # drops publish it, no sync
    return _badge(row_state(row), row.last_outcome or "never")


def _badge(state: str, text: str | None = None) -> str:
    return f'<span class="badge {state}">{_e(text or state)}</span>'


def _solvable(solvable: bool | None) -> str:
    if solvable is None:
        return '<span class="muted">not checked</span>'
    return "yes" if solvable else '<span class="no">NO</span>'


def _folders(folders: Sequence[DropFolderStatus]) -> str:
    if not folders:
        return '<span class="muted">none</span>'
    items = "".join(f"<li><code>{_e(f.path)}</code> ({_e(_watch(f))})</li>" for f in folders)
    return f"<ul>{items}</ul>"


def _watch(folder: DropFolderStatus) -> str:
    """`events, ext4` or `poll every 5 s, nfs4`."""
    if folder.watch_mode is None:
        return "watch mode not reported"
    how = folder.watch_mode
    if folder.poll_interval_s is not None:
        how += f" every {folder.poll_interval_s:g} s"
    return f"{how}, {folder.filesystem}" if folder.filesystem else how


def _closure(problems: Sequence[str]) -> str:
    if not problems:
        return '<span class="muted">no problems reported</span>'
    items = "".join(f'<li class="problem">{_e(p)}</li>' for p in problems)
    return f"<ul>{items}</ul>"


def _time(timestamp: float | None, now: float) -> str:
    """An absolute UTC time with how long ago (or ahead) it is."""
    if timestamp is None:
        return "-"
    iso = dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat()
    return (
        f'<time datetime="{_e(iso)}">{_e(format_time(timestamp))}</time> '
        f'<span class="ago">({_e(_relative(timestamp - now))})</span>'
    )


def _relative(seconds: float) -> str:
    amount = abs(seconds)
    if amount < 60:
        text = f"{amount:.0f} s"
    elif amount < 3600:
        text = f"{amount / 60:.0f} min"
    elif amount < 48 * 3600:
        text = f"{amount / 3600:.1f} h"
    else:
        text = f"{amount / 86400:.1f} days"
    if amount < 1:
        return "now"
    return f"in {text}" if seconds > 0 else f"{text} ago"


def _e(value: object) -> str:
    return escape(str(value), quote=True)
