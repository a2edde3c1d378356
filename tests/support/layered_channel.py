"""A generated upstream with layered dependencies across linux-64, osx-arm64 and noarch.

Shaped like conda-forge in miniature: pythons 3.11-3.13 with their python_abi, compiled
packages built once per python per platform, platform-specific runtime libraries (glibc-bound
on Linux, llvm-openmp on macOS), noarch python packages, and many unrelated packages whose only
purpose is to make a filtered mirror visibly smaller than its upstream.
"""

from __future__ import annotations

from tests.support.builder import PackageSpec

PLATFORMS = ("linux-64", "osx-arm64")
PYTHONS = ("3.11", "3.12", "3.13")


def _abi(py: str) -> str:
    return f"cp{py.replace('.', '')}"


def layered_specs(noise: int = 120) -> list[PackageSpec]:
    specs: list[PackageSpec] = []
    for platform in PLATFORMS:
        linux = platform.startswith("linux")
        base = ("__glibc >=2.17",) if linux else ("__osx >=11.0",)
        runtime = "libgcc" if linux else "llvm-openmp"
        specs += [
            PackageSpec(runtime, "14.2.0", build="h0_1", subdir=platform, depends=base),
            PackageSpec("libzlib", "1.3.1", build="h0_2", subdir=platform, depends=(runtime,)),
            PackageSpec("libzlib", "1.2.13", build="h0_5", subdir=platform, depends=(runtime,)),
            PackageSpec("openssl", "3.4.0", build="h0_0", subdir=platform,
                        depends=(f"{runtime} >=14", "libzlib >=1.3,<2")),
            PackageSpec("openssl", "3.3.2", build="h0_0", subdir=platform,
                        depends=(f"{runtime} >=14", "libzlib >=1.2.13,<2")),
            PackageSpec("libblas", "3.9.0", build="h0_openblas", subdir=platform,
                        depends=(runtime,)),
        ]  # fmt: skip
        for py in PYTHONS:
            for patch in ("1", "2"):
                specs.append(
                    PackageSpec("python", f"{py}.{patch}", build="h0_0_cpython",
                                subdir=platform,
                                depends=("libzlib >=1.3,<2", "openssl >=3.3,<4",
                                         f"python_abi {py}.* *_{_abi(py)}", *base))
                )  # fmt: skip
            for np_version in ("1.26.4", "2.1.3"):
                specs.append(
                    PackageSpec("numpy", np_version, build=f"py{_abi(py)}h0_0", subdir=platform,
                                depends=(f"python >={py},<{_next(py)}.0a0",
                                         f"python_abi {py}.* *_{_abi(py)}", "libblas >=3.9,<4",
                                         runtime))
                )  # fmt: skip
    for py in PYTHONS:
        specs.append(PackageSpec("python_abi", py, build=f"7_{_abi(py)}", subdir="noarch",
                                 constrains=(f"python {py}.* *_cpython",)))  # fmt: skip
    specs += [
        PackageSpec("requests", "2.32.3", build="pyhd8ed1ab_0", noarch="python",
                    depends=("python >=3.8", "urllib3 >=1.21.1,<3", "idna >=2.5,<4",
                             "certifi >=2017.4.17")),
        PackageSpec("requests", "2.31.0", build="pyhd8ed1ab_0", noarch="python",
                    depends=("python >=3.7", "urllib3 >=1.21.1,<3", "idna >=2.5,<4",
                             "certifi >=2017.4.17")),
        PackageSpec("urllib3", "2.2.3", build="pyhd8ed1ab_0", noarch="python",
                    depends=("python >=3.8",)),
        PackageSpec("urllib3", "1.26.20", build="pyhd8ed1ab_0", noarch="python",
                    depends=("python >=3.7",)),
        PackageSpec("idna", "3.10", build="pyhd8ed1ab_0", noarch="python",
                    depends=("python >=3.6",)),
        PackageSpec("certifi", "2024.8.30", build="pyhd8ed1ab_0", noarch="python",
                    depends=("python >=3.7",)),
    ]  # fmt: skip
    for i in range(noise):
        subdir = ("noarch", *PLATFORMS)[i % 3]
        for v in ("1.0", "1.1"):
            depends = ("libzlib",) if subdir != "noarch" else ()
            specs.append(
                PackageSpec(f"unrelated{i:03d}", v, build="h0_0", subdir=subdir, depends=depends)
            )
    return specs


def _next(py: str) -> str:
    major, minor = py.split(".")
    return f"{major}.{int(minor) + 1}"
