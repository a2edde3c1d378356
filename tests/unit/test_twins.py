"""A package in both formats: which differences between its two records matter."""

from __future__ import annotations

import json

from mirror.core.twins import differences, disagreeing_twins, twin_of


def raw(**fields: object) -> bytes:
    base = {"name": "a", "version": "1", "build": "0", "build_number": 0, "depends": ["x", "y"]}
    return json.dumps({**base, **fields}).encode()


def test_twins_are_the_other_format_of_the_same_build() -> None:
    assert twin_of("a-1-0.conda") == "a-1-0.tar.bz2"
    assert twin_of("a-1-0.tar.bz2") == "a-1-0.conda"
    assert twin_of("a-1-0.zip") is None


def test_hashes_sizes_timestamps_and_dependency_order_are_not_differences() -> None:
    a = raw(sha256="a" * 64, size=1, timestamp=1, depends=["x", "y"])
    b = raw(sha256="b" * 64, size=2, timestamp=2, depends=["y", "x"])
    assert differences(a, b) == ()
    assert differences(raw(), raw(license="")) == ()  # absent and empty mean the same


def test_what_a_client_would_install_differently_is_named() -> None:
    assert differences(raw(), raw(depends=["x"], license="MIT")) == ("depends", "license")
    records = {"a-1-0.conda": raw(), "a-1-0.tar.bz2": raw(noarch="python")}
    assert disagreeing_twins(records.items(), records) == [
        ("a-1-0.conda", "a-1-0.tar.bz2", ("noarch",))
    ]
