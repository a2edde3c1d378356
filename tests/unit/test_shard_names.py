"""Which upstream shards the rules can reach: include names and globs matched against the
index's names, lockfile names, and a closure walked name by name."""

from __future__ import annotations

import hashlib

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from mirror.core.shard_names import NameWalk, names_for_specs, names_in_index, walk_names
from mirror.core.shards import build_shard
from mirror.core.specs import Spec, parse_spec
from mirror.core.upstream_shard_records import decode_shard

INDEX = ["numpy", "numpy-base", "python", "pyyaml", "python_abi", "r-base", "PyQt", "zlib"]


def spec(pattern: str) -> Spec:
    return Spec(text=f"spec {pattern}", name_pattern=pattern)


def test_exact_include_names_select_themselves_and_unknown_ones_are_reported() -> None:
    selection = names_for_specs(INDEX, [spec("numpy"), spec("zlib"), spec("nonesuch")])
    assert selection.names == {"numpy", "zlib"}
    assert selection.unmatched == ("spec nonesuch",)


def test_globs_are_matched_against_every_name_in_the_index() -> None:
    selection = names_for_specs(INDEX, [spec("py*"), spec("*-base"), spec("q*")])
    assert selection.names == {"python", "pyyaml", "python_abi", "PyQt", "numpy-base", "r-base"}
    assert selection.unmatched == ("spec q*",)


def test_names_are_compared_lowercased_as_spec_matches_name_does() -> None:
    assert names_for_specs(INDEX, [spec("pyqt")]).names == {"PyQt"}
    assert names_for_specs(INDEX, [spec("PyQt")]).names == set(), "patterns are lowercase"


def test_real_specs_select_by_their_name_part_only() -> None:
    specs = [parse_spec("numpy >=1.26"), parse_spec("r-*[license=GPL*]"), parse_spec("ZLIB")]
    assert names_for_specs(INDEX, specs).names == {"numpy", "r-base", "zlib"}


_NAMES = st.text(alphabet="abcxyzAB_-.*?[]", min_size=1, max_size=6)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    index=st.lists(_NAMES.filter(lambda n: "*" not in n), max_size=30),
    patterns=st.lists(_NAMES, max_size=5),
)
def test_selection_equals_asking_matches_name_of_every_name(
    index: list[str], patterns: list[str]
) -> None:
    specs = [spec(p.lower()) for p in patterns]
    expected = {n for n in index if any(s.matches_name(n) for s in specs)}
    assert names_for_specs(index, specs).names == expected


def test_lockfile_names_are_kept_when_the_index_has_them() -> None:
    assert names_in_index(set(INDEX), ["numpy", "absent", "zlib"]) == {"numpy", "zlib"}


def test_a_walk_hands_out_each_name_once_in_sorted_rounds() -> None:
    walk = NameWalk(["b", "a", "", "a"])
    assert walk.next_round() == ("a", "b")
    walk.add(["c", "a", "b", "c"])
    assert walk.pending and walk.next_round() == ("c",)
    assert not walk.pending and walk.next_round() == ()
    assert walk.seen == {"a", "b", "c"}


def test_walk_names_follows_dependencies_until_nothing_new_turns_up() -> None:
    graph = {"app": ["lib", "python"], "lib": ["zlib", "python"], "python": ["zlib"], "zlib": []}
    rounds: list[tuple[str, ...]] = []

    def fetch_round(names: tuple[str, ...]) -> list[str]:
        rounds.append(names)
        return [dep for name in names for dep in graph.get(name, ["missing-upstream"])]

    assert walk_names(["app"], fetch_round) == {"app", "lib", "python", "zlib"}
    assert rounds == [("app",), ("lib", "python"), ("zlib",)]


def test_a_closure_over_real_shards_reaches_the_names_their_records_depend_on() -> None:
    depends = {"app": ["lib >=1", "__glibc"], "lib": ["zlib 1.*", "conda-forge::python"]}
    shards = {}
    for name in ("app", "lib", "zlib", "python", "unrelated"):
        raw = msgspec.json.encode(
            {"name": name, "version": "1", "build": "0", "depends": depends.get(name, []),
             "sha256": hashlib.sha256(name.encode()).hexdigest()},
            order="sorted",
        )  # fmt: skip
        shards[name] = build_shard(name, [(f"{name}-1-0.conda", raw)])

    def fetch_round(names: tuple[str, ...]) -> set[str]:
        found: set[str] = set()
        for name in names:
            if name in shards:
                data, digest = shards[name].data, shards[name].sha256
                shard = decode_shard(data, name=name, sha256_hex=digest, source=name)
                found |= shard.dependency_names
        return found

    assert walk_names(["app"], fetch_round) == {"app", "lib", "zlib", "python"}
