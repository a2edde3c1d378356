"""The status page renderer: every status field is shown, every value is escaped, a failed sync
reads as failed."""

from __future__ import annotations

import dataclasses
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from mirror.health.status import DROPS_ROW
from mirror.reports import DropFolderStatus, QuarantineEntry, SubdirStatus
from mirror.service.status_page import channel_state, render_status_page, row_state

NOW = 1_750_000_000.0
HOSTILE = (
    "<script>alert('x')</script>",
    '"><img src=x onerror=alert(1)>',
    "' onmouseover='alert(2)",
    "</td></tr></table><h1>owned</h1>",
    "&lt;already escaped&gt; & <!-- comment",
    "\u202e\u0000tricky\r\n",
)
# every tag the page is made of; a value that adds any other tag (or an attribute we do not
# write) has escaped its text
PAGE_TAGS = {
    "html", "head", "meta", "link", "title", "style", "body", "header", "h1", "h2", "p", "a",
    "main", "section", "dl", "dt", "dd", "ul", "li", "code", "table", "thead", "tbody", "tr",
    "th", "td", "span", "strong", "time", "div",
}  # fmt: skip
PAGE_ATTRIBUTES = {
    "lang", "charset", "http-equiv", "content", "name", "rel", "href", "class", "id",
    "data-channel", "data-state", "data-subdir", "data-outcome", "scope", "colspan", "datetime",
}  # fmt: skip


class Parsed(HTMLParser):
    """Tags, attributes and text of a document, as a browser's tokenizer sees them."""

    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[str] = []
        self.feed(document)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.texts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.texts)

    def with_class(self, tag: str, css_class: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and css_class in (a.get("class") or "")]


def a_row(**changes: object) -> SubdirStatus:
    row = SubdirStatus(
        channel="conda-forge",
        subdir="linux-64",
        packages=1234,
        size_bytes=5_678_000,
        last_sync_at=NOW - 300,
        last_outcome="ok",
        next_run_at=NOW + 3300,
        quarantined=0,
    )
    return dataclasses.replace(row, **changes)  # type: ignore[arg-type]


def test_every_status_field_is_shown() -> None:
    row = a_row(
        solvable=False,
        last_outcome="failed",
        last_message="HTTP 500 from upstream for linux-64/repodata.json",
        repodata_source="https://example.invalid/conda-forge/linux-64/repodata.json.zst",
        solve_problem="python 3.12.*: nothing provides libzlib",
        quarantined=3,
        quarantined_files=(QuarantineEntry("bad-1.0-0.conda", "corrupt: not a valid zip"),),
        drop_folders=(DropFolderStatus("/srv/incoming/cf", "poll"),),
        closure_problems=("libfoo >=2: no candidate on linux-64",),
        closure_warnings=("'linuxtool' has no candidate for linux-64 upstream",),
        dangling_dependencies=1201,
        dangling_names=("python_abi", "libzlib"),
        repodata_via="shards",
        repodata_bytes=12_300,
    )
    shown = {  # field -> how it appears on the page
        "channel": "conda-forge",
        "subdir": "linux-64",
        "packages": "1,234",
        "size_bytes": "5.7 MB",
        "last_sync_at": "2025-06-15 15:01:40Z",
        "last_outcome": "failed",
        "next_run_at": "2025-06-15 16:01:40Z",
        "quarantined": "3",
        "solvable": "NO",
        "last_message": "HTTP 500 from upstream for linux-64/repodata.json",
        "repodata_source": "https://example.invalid/conda-forge/linux-64/repodata.json.zst",
        "solve_problem": "python 3.12.*: nothing provides libzlib",
        "quarantined_files": "bad-1.0-0.conda: corrupt: not a valid zip",
        "drop_folders": "/srv/incoming/cf (poll)",
        "closure_problems": "libfoo >=2: no candidate on linux-64",
        "closure_warnings": "Closure: 'linuxtool' has no candidate for linux-64 upstream",
        "dangling_dependencies": "1,201 records depend on packages this channel does not hold",
        "dangling_names": "does not hold: python_abi, libzlib",
        "repodata_via": "(shards 12.3 kB last fetch)",
        "repodata_bytes": "12.3 kB",
    }
    assert set(shown) == {f.name for f in dataclasses.fields(SubdirStatus)}, "a field not shown"
    text = Parsed(render_status_page([row], now=NOW)).text
    for field, expected in shown.items():
        assert expected in text, field
    assert "(5 min ago)" in text and "(in 55 min)" in text


def test_a_failed_sync_is_marked_failed_on_its_row_and_channel_with_its_message() -> None:
    rows = [
        a_row(channel="good"),
        a_row(channel="broken", last_outcome="failed", last_message="upstream answered 500"),
        a_row(channel="broken", subdir="noarch"),
    ]
    page = Parsed(render_status_page(rows, now=NOW))
    sections = {a["data-channel"]: a for t, a in page.tags if t == "section"}
    assert sections["broken"]["data-state"] == "failed"
    assert sections["good"]["data-state"] == "ok"
    failed_rows = page.with_class("tr", "state-failed")
    assert {(a["data-subdir"], a["class"]) for a in failed_rows} == {
        ("linux-64", "subdir state-failed"),
        ("linux-64", "detail state-failed"),
    }
    assert len(page.with_class("span", "badge failed")) == 2  # the channel's and the row's
    assert "Sync failed: upstream answered 500" in page.text
    assert "subdirs whose last sync failed: 1" in page.text


def test_hostile_values_are_shown_as_text_and_add_no_markup() -> None:
    for hostile in HOSTILE:
        row = a_row(
            channel=hostile,
            subdir=hostile,
            last_outcome=hostile,
            last_message=hostile,
            repodata_source=hostile,
            solve_problem=hostile,
            quarantined=1,
            quarantined_files=(QuarantineEntry(hostile, hostile),),
            drop_folders=(DropFolderStatus(hostile, hostile),),
            closure_problems=(hostile,),
            closure_warnings=(hostile,),
            dangling_dependencies=1,
            dangling_names=(hostile,),
        )
        document = render_status_page([row], now=NOW)
        page = Parsed(document)
        assert "<script" not in document.lower()
        assert {tag for tag, _ in page.tags} <= PAGE_TAGS
        assert {name for _, attrs in page.tags for name in attrs} <= PAGE_ATTRIBUTES
        assert page.text.count(hostile) >= 10, hostile  # every place it is shown, verbatim
        section = next(a for t, a in page.tags if t == "section")
        assert section["data-channel"] == hostile


BENIGN = Parsed(render_status_page([a_row(channel="c", last_message="m")], now=NOW))


def structure(page: Parsed) -> list[tuple[str, set[str]]]:
    """The tags in order, each with the names of its attributes."""
    return [(tag, set(attrs)) for tag, attrs in page.tags]


@settings(derandomize=True, max_examples=200, deadline=None, database=None)
@given(st.text(max_size=40), st.text(min_size=1, max_size=40))
def test_no_text_in_a_value_changes_the_page_structure(channel: str, message: str) -> None:
    page = Parsed(render_status_page([a_row(channel=channel, last_message=message)], now=NOW))
    assert structure(page) == structure(BENIGN)


def test_the_page_refreshes_itself_and_carries_no_script() -> None:
    document = render_status_page([a_row()], now=NOW, refresh_s=15)
    page = Parsed(document)
    refresh = [a for t, a in page.tags if t == "meta" and a.get("http-equiv") == "refresh"]
    assert refresh == [{"http-equiv": "refresh", "content": "15"}]
    assert "script" not in {t for t, _ in page.tags}
    assert not any(name.startswith("on") for _, attrs in page.tags for name in attrs)


def test_quarantine_lists_reasons_and_says_how_many_more_there_are() -> None:
    files = tuple(QuarantineEntry(f"f{i}-1-0.conda", f"reason {i}") for i in range(2))
    page = Parsed(render_status_page([a_row(quarantined=7, quarantined_files=files)], now=NOW))
    assert "f0-1-0.conda: reason 0" in page.text and "f1-1-0.conda: reason 1" in page.text
    assert "and 5 more" in page.text


def test_rejected_drops_have_their_own_row_without_an_outcome() -> None:
    drops = a_row(
        subdir=DROPS_ROW,
        last_sync_at=None,
        last_outcome=None,
        quarantined=1,
        quarantined_files=(QuarantineEntry("x.conda", "unsafe_name"),),
    )
    page = Parsed(render_status_page([a_row(), drops], now=NOW))
    assert "rejected drops" in page.text and "x.conda: unsafe_name" in page.text
    assert next(a for t, a in page.tags if t == "section")["data-state"] == "ok"


def test_states_from_outcomes_and_problems() -> None:
    assert row_state(a_row(last_outcome=None)) == "never"
    assert row_state(a_row(last_outcome="unchanged")) == "ok"
    assert row_state(a_row(last_outcome="imported")) == "ok"
    assert row_state(a_row(last_outcome="guarded")) == "warning"
    assert row_state(a_row(last_outcome="something new")) == "warning"
    assert channel_state([a_row(), a_row(solvable=False)]) == "warning"
    assert channel_state([a_row(), a_row(closure_problems=("x",))]) == "warning"
    assert channel_state([a_row(), a_row(dangling_dependencies=2)]) == "warning"
    assert channel_state([a_row(dangling_dependencies=0)]) == "ok"
    assert channel_state([a_row(last_outcome="guarded"), a_row(last_outcome="failed")]) == "failed"
    assert channel_state([a_row(last_outcome=None)]) == "never"


def test_an_empty_status_still_renders_a_page() -> None:
    page = Parsed(render_status_page([], now=NOW))
    assert "0 channels, 0 subdirs" in page.text
    assert "Nothing synced, indexed or imported yet." in page.text
