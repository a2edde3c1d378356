"""Filtering rules with conda semantics, one rule at a time and in their documented order."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirror.core.filters import DAY_MS, FilterRules, select
from mirror.core.records import parse_repodata
from mirror.core.specs import newest_versions, parse_spec

NOW_MS = 1_750_000_000_000


def rec(
    name: str, version: str, build: str = "0", ext: str = ".conda", **extra: Any
) -> tuple[str, dict]:
    record = {
        "name": name,
        "version": version,
        "build": build,
        "build_number": 0,
        "depends": [],
        "sha256": "a" * 64,
        "size": 100,
        "license": "MIT",
        "timestamp": NOW_MS - 30 * DAY_MS,
        "subdir": "linux-64",
        **extra,
    }
    return f"{name}-{version}-{build}{ext}", record


def upstream(*records: tuple[str, dict]) -> Any:
    doc: dict[str, dict] = {"packages": {}, "packages.conda": {}}
    for filename, record in records:
        doc["packages.conda" if filename.endswith(".conda") else "packages"][filename] = record
    return parse_repodata(json.dumps(doc).encode(), source="test")


def chosen(repodata: Any, now_ms: int = NOW_MS, **rules: Any) -> set[str]:
    for key in ("include", "exclude"):
        if key in rules:
            rules[key] = tuple(parse_spec(s) for s in rules[key])
    return {
        r.filename
        for r in select(repodata, FilterRules(**rules), now_ms, subdir="linux-64").records
    }


WORLD = upstream(
    rec("numpy", "1.9.0", "py311h0_0"),
    rec("numpy", "1.10.0", "py311h0_0"),
    rec("numpy", "1.10.0", "py312h0_0"),
    rec("numpy", "2.0.0rc1", "py312h0_0"),
    rec("numpy", "2.0.0", "py312h0_1", build_number=1),
    rec("pandas", "2.2.1", "py312h1_0", license="BSD-3-Clause", license_family="BSD"),
    rec("readline", "8.2", "h2_0", license="GPL-3.0-only", license_family="GPL"),
    rec("python", "3.12.1", "h3_0_cpython", license="Python-2.0"),
    rec("python", "3.13.0", "h3_0_cpython", license="Python-2.0"),
    rec("python", "3.13.0", "h3_0_cpython", ext=".tar.bz2", license="Python-2.0"),
    rec("pytest", "8.0", "pyh_0"),
)


def test_no_include_means_everything_and_prefers_conda() -> None:
    assert chosen(WORLD) == {fn for fn, _ in WORLD.entries.items()} - {
        "python-3.13.0-h3_0_cpython.tar.bz2"
    }


def test_both_formats_when_prefer_conda_is_off() -> None:
    assert "python-3.13.0-h3_0_cpython.tar.bz2" in chosen(WORLD, prefer_conda=False)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "numpy >=1.10",
            {
                "numpy-1.10.0-py311h0_0.conda",
                "numpy-1.10.0-py312h0_0.conda",
                "numpy-2.0.0rc1-py312h0_0.conda",
                "numpy-2.0.0-py312h0_1.conda",
            },
        ),
        # conda semantics: a pre-release of 2 sorts below 2, so "<2" admits 2.0.0rc1
        (
            "numpy <2",
            {
                "numpy-1.9.0-py311h0_0.conda",
                "numpy-1.10.0-py311h0_0.conda",
                "numpy-1.10.0-py312h0_0.conda",
                "numpy-2.0.0rc1-py312h0_0.conda",
            },
        ),
        ("numpy 1.10.*", {"numpy-1.10.0-py311h0_0.conda", "numpy-1.10.0-py312h0_0.conda"}),
        (
            "numpy * py312*",
            {
                "numpy-1.10.0-py312h0_0.conda",
                "numpy-2.0.0rc1-py312h0_0.conda",
                "numpy-2.0.0-py312h0_1.conda",
            },
        ),
        ("numpy[build_number=1]", {"numpy-2.0.0-py312h0_1.conda"}),
        ("numpy[version='>=2.0.0rc1,<2.0.0']", {"numpy-2.0.0rc1-py312h0_0.conda"}),
        (
            "py*",
            {
                "python-3.12.1-h3_0_cpython.conda",
                "python-3.13.0-h3_0_cpython.conda",
                "pytest-8.0-pyh_0.conda",
            },
        ),
        ("*[license=gpl*]", {"readline-8.2-h2_0.conda"}),
        ("*[license_family=BSD]", {"pandas-2.2.1-py312h1_0.conda"}),
        ("python >=3.13", {"python-3.13.0-h3_0_cpython.conda"}),
    ],
)
def test_include_specs(spec: str, expected: set[str]) -> None:
    assert chosen(WORLD, include=[spec]) == expected


def test_exclude_applies_after_include() -> None:
    assert chosen(
        WORLD, include=["numpy", "readline"], exclude=["numpy <2.0.0rc1", "*[license=GPL*]"]
    ) == {"numpy-2.0.0rc1-py312h0_0.conda", "numpy-2.0.0-py312h0_1.conda"}


def test_license_allow_and_deny_match_license_or_family_case_insensitively() -> None:
    assert chosen(WORLD, include=["pandas", "readline", "pytest"], license_deny=("gpl*",)) == {
        "pandas-2.2.1-py312h1_0.conda",
        "pytest-8.0-pyh_0.conda",
    }
    assert chosen(WORLD, license_allow=("bsd",)) == {"pandas-2.2.1-py312h1_0.conda"}


@pytest.mark.parametrize(
    ("versions", "count", "kept"),
    [
        (["1.9", "1.10", "1.8"], 2, {"1.10", "1.9"}),
        (["1.0rc1", "1.0", "0.9"], 1, {"1.0"}),
        (["1.0rc1", "1.0", "0.9"], 2, {"1.0", "1.0rc1"}),
        (["1!0.1", "2.0", "1.0"], 1, {"1!0.1"}),  # an epoch beats any version without one
        (["1.0.post1", "1.0", "1.1.dev1"], 1, {"1.1.dev1"}),
        (["1.0.dev1", "1.0"], 1, {"1.0"}),
        (["1.0_1", "1.0.1", "1.0"], 1, {"1.0_1", "1.0.1"}),  # underscore == dot: one version
        (["1.0", "1.0.0", "0.9"], 1, {"1.0", "1.0.0"}),
        (["2023.10", "2023.9.1"], 1, {"2023.10"}),
    ],
)
def test_keep_latest_uses_conda_version_order(
    versions: list[str], count: int, kept: set[str]
) -> None:
    assert newest_versions(versions, count) == kept


def test_keep_latest_keeps_every_build_of_the_newest_versions() -> None:
    assert chosen(WORLD, include=["numpy"], keep_latest=2) == {
        "numpy-2.0.0-py312h0_1.conda",
        "numpy-2.0.0rc1-py312h0_0.conda",
    }
    assert chosen(WORLD, include=["numpy <2.0.0rc1"], keep_latest=1) == {
        "numpy-1.10.0-py311h0_0.conda",
        "numpy-1.10.0-py312h0_0.conda",
    }


def test_keep_latest_counts_only_what_passed_the_earlier_rules() -> None:
    # the newest numpy is filtered out by exclude first: keep_latest then takes the next ones
    assert chosen(WORLD, include=["numpy"], exclude=["numpy >=2"], keep_latest=1) == {
        "numpy-2.0.0rc1-py312h0_0.conda"
    }
    assert chosen(WORLD, include=["numpy"], exclude=["numpy >=2.0.0rc1"], keep_latest=1) == {
        "numpy-1.10.0-py311h0_0.conda",
        "numpy-1.10.0-py312h0_0.conda",
    }


def test_date_window_and_cooldown() -> None:
    repo = upstream(
        rec("a", "1", timestamp=NOW_MS - 100 * DAY_MS),
        rec("a", "2", timestamp=NOW_MS - 10 * DAY_MS),
        rec("a", "3", timestamp=NOW_MS - 1 * DAY_MS),
        rec("a", "0", timestamp=None),
    )
    assert chosen(repo, not_older_than_ms=NOW_MS - 50 * DAY_MS) == {"a-2-0.conda", "a-3-0.conda"}
    assert chosen(repo, not_newer_than_ms=NOW_MS - 5 * DAY_MS) == {
        "a-0-0.conda",
        "a-1-0.conda",
        "a-2-0.conda",
    }
    assert chosen(repo, max_age_days=20) == {"a-2-0.conda", "a-3-0.conda"}
    assert chosen(repo, cooldown_days=3) == {"a-0-0.conda", "a-1-0.conda", "a-2-0.conda"}
    # cooldown and keep_latest together: the newest version that has cooled down
    assert chosen(repo, cooldown_days=3, keep_latest=1) == {"a-2-0.conda"}


def test_timestamps_in_seconds_are_understood() -> None:
    repo = upstream(rec("a", "1", timestamp=(NOW_MS - 100 * DAY_MS) // 1000))
    assert chosen(repo, max_age_days=50) == set()
    assert chosen(repo, max_age_days=150) == {"a-1-0.conda"}


def test_selection_knows_when_time_will_change_its_verdict() -> None:
    repo = upstream(
        rec("a", "1", timestamp=NOW_MS - 1 * DAY_MS), rec("a", "2", timestamp=NOW_MS - 10 * DAY_MS)
    )
    rules = FilterRules(cooldown_days=3, max_age_days=30)
    selection = select(repo, rules, NOW_MS, subdir="linux-64")
    assert {r.filename for r in selection.records} == {"a-2-0.conda"}
    assert selection.valid_until_ms == NOW_MS + 2 * DAY_MS  # when a-1 cools down
    assert select(repo, FilterRules(), NOW_MS, subdir="linux-64").valid_until_ms is None


def test_max_package_size() -> None:
    repo = upstream(rec("a", "1", size=10), rec("a", "2", size=10_000))
    assert chosen(repo, max_package_size_bytes=1000) == {"a-1-0.conda"}


def test_refused_records_are_reported_not_selected() -> None:
    repo = upstream(rec("a", "1"), ("../../x-1-0.conda", rec("x", "1")[1]))
    selection = select(repo, FilterRules(), NOW_MS, subdir="linux-64")
    assert [r.filename for r in selection.records] == ["a-1-0.conda"]
    assert [r.filename for r in selection.refused] == ["../../x-1-0.conda"]


def test_records_no_include_could_match_are_not_even_decoded() -> None:
    broken = parse_repodata(
        b'{"packages.conda": {"other-1-0.conda": {"name": 5},'
        b' "a-1-0.conda": ' + json.dumps(rec("a", "1")[1]).encode() + b"}}",
        source="t",
    )
    selection = select(broken, FilterRules(include=(parse_spec("a"),)), NOW_MS, subdir="linux-64")
    assert [r.filename for r in selection.records] == ["a-1-0.conda"]
    assert selection.refused == ()


@settings(max_examples=200, derandomize=True, database=None, deadline=None)
@given(
    st.lists(
        st.sampled_from(["numpy", "NumPy", "py*", "python", "lib*", "*-dev", "*", "scipy"]),
        max_size=6,
    ),
    st.sampled_from(["numpy", "python", "pytest", "libb", "liba-dev", "scipy", "zlib", "Py"]),
)
def test_specs_looked_up_by_name_are_exactly_the_specs_whose_name_matches(
    patterns: list[str], name: str
) -> None:
    from mirror.core.specs import SpecsByName, parse_spec

    specs = tuple(parse_spec(p) for p in patterns)
    expected = sorted(s.text for s in specs if s.matches_name(name))
    assert sorted(s.text for s in SpecsByName(specs).for_name(name)) == expected
