"""Dangling dependencies: records that depend on a package name their channel does not hold."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from mirror.core.dangling import Dangling, DependencyRecord, dependency_record, find_dangling
from mirror.reports import DanglingReport, SyncReport
from mirror.service.metrics import MirrorMetrics


def rec(name: str, *depends: str, version: str = "1.0") -> DependencyRecord:
    return DependencyRecord(f"{name}-{version}-0.conda", name, depends)


def test_a_dependency_nothing_provides_is_dangling_and_named_with_an_example() -> None:
    found = find_dangling(
        [
            rec("numpy", "python >=3.12,<3.13.0a0", "python_abi 3.12.* *_cp312", "libblas >=3.9"),
            rec("python", "libzlib >=1.3", "python_abi 3.12.* *_cp312"),
            rec("libzlib"),
        ],
        provided_elsewhere=set(),
    )
    assert found.records == 2
    assert found.names == ("python_abi", "libblas")  # the most needed first
    assert found.missing_names == 2
    assert found.examples == (
        "numpy-1.0-0.conda needs 'python_abi 3.12.* *_cp312'",
        "python-1.0-0.conda needs 'python_abi 3.12.* *_cp312'",
    )


def test_names_another_subdir_provides_virtual_packages_and_revocation_never_dangle() -> None:
    records = [
        rec("tool", "__glibc >=2.17", "__osx >=11", "appdata"),
        rec("old", "package_has_been_revoked"),
        rec("libfoo", "zlib", "ZLib >=1"),  # names compare case-insensitively, as conda does
        rec("zlib"),
    ]
    assert find_dangling(records, provided_elsewhere={"appdata"}) == Dangling(0, (), (), 0)


def test_a_version_that_does_not_match_is_not_dangling_only_a_missing_name_is() -> None:
    """Versions are the solver's and the closure's business; a name is there or not."""
    assert find_dangling([rec("app", "lib >=9"), rec("lib")], set()).records == 0


def test_only_the_first_names_are_kept_and_the_rest_counted() -> None:
    records = [rec("app", *(f"dep{i:02d}" for i in range(14)))]
    found = find_dangling(records, set())
    assert found.records == 1 and found.missing_names == 14 and len(found.names) == 10
    assert found.names_text.endswith("dep09 and 4 more")


def test_a_record_is_read_from_its_published_json() -> None:
    raw = json.dumps({"name": "NumPy", "version": "2", "depends": ["python", 3]}).encode()
    assert dependency_record("numpy-2-0.conda", raw) == DependencyRecord(
        "numpy-2-0.conda", "numpy", ("python",)
    )
    no_depends = json.dumps({"name": "a", "depends": None}).encode()
    assert dependency_record("a-1-0.conda", no_depends) == DependencyRecord("a-1-0.conda", "a", ())
    assert dependency_record("x-1-0.conda", b'{"version": "1"}') is None
    assert dependency_record("x-1-0.conda", b"not json") is None


_names = st.sampled_from(["python", "python_abi", "numpy", "libzlib", "openssl", "certifi"])


@settings(derandomize=True, max_examples=200)
@given(st.lists(st.tuples(_names, st.lists(_names, max_size=4)), max_size=12))
def test_every_record_with_a_name_missing_from_the_channel_is_counted_and_no_other(
    drafts: list[tuple[str, list[str]]],
) -> None:
    records = [rec(name, *deps, version=str(i)) for i, (name, deps) in enumerate(drafts)]
    held = {r.name for r in records}
    found = find_dangling(records, set())
    expected = [r for r in records if any(d not in held for d in r.depends)]
    assert found.records == len(expected)
    assert set(found.names) == {d for r in expected for d in r.depends if d not in held}
    # whatever dangles, providing it elsewhere (noarch) leaves nothing
    assert find_dangling(records, set(found.names)).records == 0


def test_the_daemon_exports_the_count_per_channel_and_subdir() -> None:
    registry = CollectorRegistry()
    metrics = MirrorMetrics(registry)
    report = SyncReport(
        (),
        dangling=(
            DanglingReport("cf", "linux-64", Dangling(7, ("python_abi",))),
            DanglingReport("cf", "noarch", Dangling(0)),
        ),
    )
    metrics.record_sync("cf", report, 1.0, 1e9)
    value = registry.get_sample_value
    assert value("conda_mirror_dangling_dependencies", {"channel": "cf", "subdir": "linux-64"}) == 7
    assert value("conda_mirror_dangling_dependencies", {"channel": "cf", "subdir": "noarch"}) == 0
