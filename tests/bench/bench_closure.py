"""Benchmark: dependency closure over a conda-forge-sized upstream (issue target: < 30 s, < 2 GB).

The generated upstream has 500,000 records in linux-64 (25,000 names x 20 records) and a large
noarch (7,500 names x 20 = 150,000 records), shaped for dependencies like conda-forge: compiled
packages built per python (3.11, 3.12, 3.13) that depend on python and python_abi, 3-6 depends
per record on names below it, most into a shared core of low-level libraries and the rest within
a family of related names, so that 20 top-level specs reach a few thousand names, not all of
them. No package files exist: `mirror sync --dry-run` computes the closure and the plan, which
is what this measures (each run in its own process; wall time and peak RSS):

  a. decode: msgspec.json.decode of both documents, the floor for reading them at all;
  b. solve:  `dependencies: solve` for 20 specs x 3 python variants on linux-64 (+ noarch);
  c. all:    `dependencies: all` for the same 20 specs.

Run from the repository root:
    python -m tests.bench.bench_closure [--rounds 3] [--workdir DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

import msgspec
import yaml

from tests.bench.benchlib import (
    PYTHON,
    Summary,
    child_env,
    fmt_mb,
    fmt_s,
    markdown_table,
    rotated,
    run_child,
    write_json,
)

PLATFORM_NAMES = 25_000
NOARCH_NAMES = 7_500
RECORDS_PER_NAME = 20
CORE = 400  # low-level libraries most packages depend on
FAMILY = 60  # related names (a project's packages) that depend on each other
PYTHONS = ("311", "312", "313")
ROOTS = 20


def _version(i: int) -> str:
    return f"{i // 4}.{i % 4}.0"


def _records(
    name: str,
    index: int,
    subdir: str,
    names: list[str],
    noarch_names: list[str],
    rng: random.Random,
) -> dict[str, dict[str, Any]]:
    compiled = subdir != "noarch" and index >= CORE and rng.random() < 0.5
    out: dict[str, dict[str, Any]] = {}
    family = (index // FAMILY) * FAMILY
    for r in range(RECORDS_PER_NAME):
        version = _version(r // (4 if compiled else 2))
        build_number = r % 2
        depends: list[str] = []
        if compiled:
            py = PYTHONS[r % 3]
            build = f"py{py}h{index:05x}_{build_number}"
            depends += [f"python >=3.{py[1:]},<3.{int(py[1:]) + 1}.0a0",
                        f"python_abi 3.{py[1:]}.* *_cp{py}"]  # fmt: skip
        elif subdir == "noarch":
            build = f"pyhd8ed1ab_{build_number}"
            depends.append("python >=3.9")
        else:
            build = f"h{index:05x}_{r}"
        pool_core = (
            names[: min(index, CORE)] if subdir != "noarch" else noarch_names[: min(index, 100)]
        )
        pool_family = (names if subdir != "noarch" else noarch_names)[family:index]
        for _ in range(rng.randint(3, 6)):
            pool = pool_family if pool_family and rng.random() < 0.4 else pool_core
            if not pool:
                break
            other = rng.choice(pool)
            if rng.random() < 0.5:
                depends.append(other)
            else:
                depends.append(f"{other} >=0.{rng.randint(0, 3)}")
        if subdir != "noarch" and index >= CORE and rng.random() < 0.2:
            depends.append(rng.choice(noarch_names[:2_000]))
        out[f"{name}-{version}-{build}.conda"] = {
            "build": build,
            "build_number": build_number,
            "depends": sorted(set(depends)),
            "license": "MIT",
            "md5": f"{rng.getrandbits(128):032x}",
            "name": name,
            "sha256": f"{rng.getrandbits(256):064x}",
            "size": rng.randint(5_000, 5_000_000),
            "subdir": subdir,
            "timestamp": 1_700_000_000_000 + r,
            "version": version,
            **({"noarch": "python"} if subdir == "noarch" else {}),
        }
    return out


def generate(root: Path, seed: int) -> list[str]:
    """Write root/linux-64 and root/noarch repodata.json; return the 20 root specs."""
    rng = random.Random(seed)
    names = ["python", *(f"lib{i:05d}" for i in range(1, CORE)),
             *(f"pkg{i:05d}" for i in range(CORE, PLATFORM_NAMES))]  # fmt: skip
    noarch_names = [f"py-{i:05d}" for i in range(NOARCH_NAMES)]
    linux: dict[str, Any] = {}
    for i, name in enumerate(names):
        if name == "python":
            for py in PYTHONS:
                for patch in range(6):
                    linux[f"python-3.{py[1:]}.{patch}-h0_cpython.conda"] = {
                        "build": "h0_cpython", "build_number": 0, "depends": [
                            f"python_abi 3.{py[1:]}.* *_cp{py}", "lib00001", "lib00002"],
                        "license": "PSF", "md5": "0" * 32, "name": "python", "sha256": "1" * 64,
                        "size": 30_000_000, "subdir": "linux-64",
                        "timestamp": 1_700_000_000_000, "version": f"3.{py[1:]}.{patch}",
                    }  # fmt: skip
            continue
        linux.update(_records(name, i, "linux-64", names, noarch_names, rng))
    noarch: dict[str, Any] = {}
    for py in PYTHONS:
        noarch[f"python_abi-3.{py[1:]}-7_cp{py}.conda"] = {
            "build": f"7_cp{py}", "build_number": 7, "depends": [], "license": "BSD",
            "md5": "2" * 32, "name": "python_abi", "sha256": "3" * 64, "size": 6_000,
            "subdir": "noarch", "timestamp": 1_700_000_000_000, "version": f"3.{py[1:]}",
            "constrains": [f"python 3.{py[1:]}.* *_cpython"],
        }  # fmt: skip
    for i, name in enumerate(noarch_names):
        noarch.update(_records(name, i, "noarch", names, noarch_names, rng))
    for subdir, records in (("linux-64", linux), ("noarch", noarch)):
        (root / subdir).mkdir(parents=True, exist_ok=True)
        doc = {"info": {"subdir": subdir}, "packages": {}, "packages.conda": records,
               "repodata_version": 1}  # fmt: skip
        (root / subdir / "repodata.json").write_bytes(msgspec.json.encode(doc))
    picks = rng.sample(names[PLATFORM_NAMES - 5_000 :], ROOTS)
    return picks


def config(work: Path, upstream: Path, roots: list[str], mode: str) -> Path:
    base = work / mode
    base.mkdir(parents=True, exist_ok=True)
    dependencies: Any = mode
    if mode == "solve":
        dependencies = {"mode": "solve", "variants": [[f"python 3.{p[1:]}.*"] for p in PYTHONS]}
    doc = {
        "root": "tree", "state_dir": "state",
        "channels": {"cf": {"upstream": upstream.as_uri(), "subdirs": ["linux-64", "noarch"],
                            "include": roots, "dependencies": dependencies}},
    }  # fmt: skip
    path = base / "mirror.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mirror-bench/closure"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    work: Path = args.workdir
    upstream = work / "upstream"
    roots_file = work / "roots.json"
    if not roots_file.exists():
        print("generating the upstream (once) ...", file=sys.stderr)
        roots_file.parent.mkdir(parents=True, exist_ok=True)
        roots_file.write_text(json.dumps(generate(upstream, args.seed)))
    roots = json.loads(roots_file.read_text())
    sizes = {s: (upstream / s / "repodata.json").stat().st_size for s in ("linux-64", "noarch")}
    env = child_env()
    commands = {
        "decode": [PYTHON, "-c", "import msgspec,sys; [msgspec.json.decode(open(p,'rb').read()) "
                   "for p in sys.argv[1:]]",
                   *(str(upstream / s / "repodata.json") for s in ("linux-64", "noarch"))],
        **{mode: [PYTHON, "-m", "mirror", "sync", "--dry-run", "--config",
                  str(config(work, upstream, roots, mode))] for mode in ("solve", "all")},
    }  # fmt: skip
    seconds: dict[str, list[float]] = {k: [] for k in commands}
    rss: dict[str, list[float]] = {k: [] for k in commands}
    outputs: dict[str, str] = {}
    for round_no in range(args.rounds):
        for name in rotated(list(commands), round_no):
            run = run_child(commands[name], work / "logs" / f"{name}-{round_no}.log", env=env)
            if run.returncode != 0:
                print(run.output()[-3000:], file=sys.stderr)
                raise SystemExit(f"{name} failed with exit code {run.returncode}")
            seconds[name].append(run.seconds)
            rss[name].append(run.max_rss_bytes)
            outputs[name] = run.output()
    rows = []
    for name in commands:
        t, m = Summary.of(seconds[name]), Summary.of(rss[name])
        rows.append([name, fmt_s(t.median), f"{fmt_s(t.minimum)}-{fmt_s(t.maximum)}",
                     fmt_mb(m.median)])  # fmt: skip
    print(f"upstream: linux-64 {fmt_mb(sizes['linux-64'])} JSON, noarch {fmt_mb(sizes['noarch'])}"
          f" JSON; {len(roots)} root specs; {args.rounds} rounds")  # fmt: skip
    print(markdown_table(["run", "median s", "range", "peak RSS"], rows))
    for mode in ("solve", "all"):
        summary = [line for line in outputs[mode].splitlines() if "dry run" in line]
        print(f"{mode}: " + " | ".join(s.split(": ", 1)[-1] for s in summary))
    if args.json:
        write_json(args.json, {"seconds": seconds, "rss": rss, "sizes": sizes})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
