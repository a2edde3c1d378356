"""Planning a sync: what to download, verify, keep and delete; the mass-deletion guard."""

from __future__ import annotations

from typing import Any

from mirror.core.guards import GuardLimits, GuardVerdict, RecentChanges, check_guards
from mirror.core.plan import PresentFile, SyncPlan, WantedFile, plan_sync

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


def test_a_file_whose_known_hashes_cannot_answer_the_record_is_hashed_not_replaced() -> None:
    """Files downloaded for a record with a sha256 are known without an md5 (never computed);
    should upstream's record lose its sha256, the file is hashed again, not fetched and
    counted as a replacement."""
    wanted = {
        "a.conda": WantedFile("a.conda", 5, None, "c" * 32),
        "b.conda": WantedFile("b.conda", 5, "d" * 64, None),
    }
    present = {
        "a.conda": PresentFile("a.conda", 5, "d" * 64, None, "mirror"),
        "b.conda": PresentFile("b.conda", 5, None, "c" * 32, "mirror"),
    }
    plan = plan_sync(wanted, present)
    assert [w.filename for w in plan.verify] == ["a.conda", "b.conda"]
    assert plan.download == () and plan.replaced == ()


def guard(plan: SyncPlan, published: int, **options: Any) -> GuardVerdict | None:
    return check_guards(
        published=published,
        deleting=[p.filename for p in plan.delete],
        replacing=[w.filename for w in plan.replaced],
        recent=options.pop("recent", RecentChanges()),
        limits=options.pop("limits", GuardLimits()),
        **options,
    )


def test_guard_trips_above_the_fraction_and_explains() -> None:
    present = {f"{i}.conda": have(f"{i}.conda") for i in range(10)}
    plan = plan_sync({}, present)
    verdict = guard(plan, 10)
    assert verdict is not None and verdict.kind == "delete"
    assert "would delete 10 of 10" in verdict.message and "--allow-mass-delete" in verdict.message
    one_gone = plan_sync({f"{i}.conda": want(f"{i}.conda") for i in range(1, 10)}, present)
    assert guard(one_gone, 10) is None
    assert guard(plan, 0) is None
    assert guard(plan, 10, allow_delete=True) is None


def test_small_deletions_add_up_within_the_window() -> None:
    """3 of 39 per run passed every run before: 31% of a subdir went over four runs."""
    present = {f"{i:02d}.conda": have(f"{i:02d}.conda") for i in range(36)}
    plan = plan_sync({n: want(n) for n in sorted(present)[3:]}, present)  # 3 more go
    assert guard(plan, 36) is None  # alone: 3 of 36
    verdict = guard(plan, 36, recent=RecentChanges(deleted=3))  # 3 went last run
    assert verdict is not None and "6 of 39 within 7 days" in verdict.message


def test_upstream_changing_published_bytes_trips_the_replacement_guard() -> None:
    present = {f"{i:02d}.conda": have(f"{i:02d}.conda") for i in range(40)}
    changed = {n: WantedFile(n, 10, "e" * 64, None) for n in sorted(present)[:2]}
    plan = plan_sync({**{n: want(n) for n in present}, **changed}, present)
    assert [w.filename for w in plan.replaced] == ["00.conda", "01.conda"]
    verdict = guard(plan, 40)  # 5%, limit 2%
    assert verdict is not None and verdict.kind == "replace"
    assert "00.conda, 01.conda" in verdict.message and "--allow-mass-replace" in verdict.message
    assert guard(plan, 40, allow_replace=True) is None
    one = plan_sync({**{n: want(n) for n in present}, "00.conda": changed["00.conda"]}, present)
    assert guard(one, 40, limits=GuardLimits(max_replace_fraction=0.05)) is None


def test_files_never_published_are_not_replacements() -> None:
    present = {"a.conda": PresentFile("a.conda", 10, None, None, None)}  # untracked
    plan = plan_sync({"a.conda": WantedFile("a.conda", 11, "e" * 64, None)}, present)
    assert plan.replaced == ()
