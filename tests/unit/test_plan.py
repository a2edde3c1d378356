"""Planning a sync: what to download, verify, keep and delete; the mass-deletion guard."""

from __future__ import annotations

from mirror.core.plan import PresentFile, WantedFile, deletion_guard, plan_sync

SHA_A, SHA_B = "a" * 64, "b" * 64


def want(name: str, size: int = 10, sha: str = SHA_A) -> WantedFile:
    return WantedFile(name, size, sha, None)


def have(
    name: str, size: int = 10, sha: str | None = SHA_A, origin: str | None = "mirror"
) -> PresentFile:
    return PresentFile(name, size, sha, None, origin)


def test_plan_sorts_files_into_download_verify_keep_delete() -> None:
    plan = plan_sync(
        {
            n.filename: n
            for n in [
                want("new.conda"),
                want("same.conda"),
                want("unknown.conda"),
                want("resized.conda", size=11),
                want("rehashed.conda", sha=SHA_B),
            ]
        },
        {
            p.filename: p
            for p in [
                have("same.conda"),
                have("unknown.conda", sha=None, origin=None),
                have("resized.conda"),
                have("rehashed.conda"),
                have("gone.conda"),
                have("local.conda", origin="local"),
                have("stray.conda", sha=None, origin=None),
            ]
        },
    )
    assert [w.filename for w in plan.download] == ["new.conda", "rehashed.conda", "resized.conda"]
    assert [w.filename for w in plan.verify] == ["unknown.conda"]
    assert [w.filename for w in plan.keep] == ["same.conda"]
    assert [p.filename for p in plan.delete] == ["gone.conda"]  # never local or unknown files
    assert [p.filename for p in plan.untracked] == ["stray.conda"]
    assert plan.download_bytes == 31


def test_md5_only_records_compare_by_md5() -> None:
    wanted = {"a.conda": WantedFile("a.conda", 5, None, "c" * 32)}
    present = {"a.conda": PresentFile("a.conda", 5, "d" * 64, "c" * 32, "mirror")}
    assert [w.filename for w in plan_sync(wanted, present).keep] == ["a.conda"]


def test_guard_trips_above_the_fraction_and_explains() -> None:
    present = {f"{i}.conda": have(f"{i}.conda") for i in range(10)}
    plan = plan_sync({}, present)
    reason = deletion_guard(plan, published_count=10, max_fraction=0.1)
    assert reason and "would delete 10 of 10" in reason and "--allow-mass-delete" in reason
    one_gone = plan_sync({f"{i}.conda": want(f"{i}.conda") for i in range(1, 10)}, present)
    assert deletion_guard(one_gone, published_count=10, max_fraction=0.1) is None
    assert deletion_guard(plan, published_count=0, max_fraction=0.1) is None
