"""The order an import installs a bundle's files in (core/bundle_manifest.apply_rank)."""

from __future__ import annotations

from mirror.core.bundle_manifest import apply_rank


def test_an_import_installs_packages_first_and_each_compressed_copy_before_its_json() -> None:
    paths = [
        "cf/linux-64/current_repodata.json",
        "cf/linux-64/current_repodata.json.zst",
        "cf/linux-64/repodata.json",
        "cf/linux-64/repodata.json.zst",
        "cf/linux-64/repodata_shards.msgpack.zst",
        "cf/linux-64/run_exports.json",
        "cf/linux-64/shards/" + "a" * 64 + ".msgpack.zst",
        "cf/linux-64/zlib-1.3.1-h0_0.conda",
    ]
    order = sorted(paths, key=lambda p: (apply_rank(p), p))
    assert order[0] == "cf/linux-64/zlib-1.3.1-h0_0.conda"
    for compressed, plain in (
        ("repodata.json.zst", "repodata.json"),
        ("current_repodata.json.zst", "current_repodata.json"),
    ):
        assert order.index(f"cf/linux-64/{compressed}") < order.index(f"cf/linux-64/{plain}")
    assert order.index("cf/linux-64/repodata_shards.msgpack.zst") > order.index(
        "cf/linux-64/shards/" + "a" * 64 + ".msgpack.zst"
    )
