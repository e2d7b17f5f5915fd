"""Which wheels the GPU machine lacks, derived rather than listed: the project's dependencies and
the check's own (the `gpu-check` extra) resolved for Python 3.12 manylinux x86-64 on top of the
machine's packages (benchmarks/gpu_machine.txt), minus what the machine's packages resolve to
alone. pip's resolver does both resolutions (metadata only); the difference is downloaded.

    python benchmarks/gpu_carry.py [--dest .whl]     # what gpu_wheels.sh runs

A dependency the machine already has by name (huggingface_hub: the machine's transformers pins
its own hub client; the check downloads nothing) is not carried whatever version the project asks
for. A carried package that would replace a machine package with another version is an error:
it would shadow the machine's copy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MACHINE = ROOT / "benchmarks" / "gpu_machine.txt"
PYTHON_VERSION = "3.12"
# glibc 2.28 and older (the machine's torch wheel is manylinux_2_28), as pip names them
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)] + ["manylinux2014_x86_64", "manylinux2010_x86_64",
                                                                             "manylinux1_x86_64"]
TARGET = ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp",
          "--abi", "cp" + PYTHON_VERSION.replace(".", ""), "--abi", "abi3", "--abi", "none",
          *(x for p in PLATFORMS for x in ("--platform", p))]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def name_of(requirement: str) -> str:
    return canonical(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1))


def machine_requirements() -> list[str]:
    return [line.strip() for line in MACHINE.read_text().splitlines() if line.strip() and not line.startswith("#")]


def project_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["gpu-check"]]


def resolve(requirements: list[str]) -> dict[str, tuple[str, str]]:
    """name -> (version, wheel URL) of everything pip would install for `requirements`."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                        "--report", str(report), "--target", str(Path(tmp) / "t"), *TARGET, *requirements], check=True)
        found = json.loads(report.read_text())["install"]
    return {canonical(item["metadata"]["name"]): (item["metadata"]["version"], item["download_info"]["url"]) for item in found}


def carried() -> dict[str, str]:
    """name -> version of every wheel the machine lacks."""
    machine = machine_requirements()
    on_machine = {name_of(r) for r in machine}
    wanted = [r for r in project_requirements() if name_of(r) not in on_machine]
    with ThreadPoolExecutor(2) as pool:  # two resolver processes, mostly waiting on the index
        alone, together = pool.map(resolve, [machine, machine + wanted])
    shadowed = {n: (alone[n][0], v) for n, (v, _) in together.items() if n in alone and alone[n][0] != v}
    if shadowed:
        raise SystemExit(f"the project needs other versions of the machine's packages: {shadowed}")
    return {n: v for n, (v, _) in sorted(together.items()) if n not in alone}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", type=Path, default=ROOT / ".whl")
    parser.add_argument("--key", action="store_true", help="print a hash of what decides the carried wheels, and stop")
    args = parser.parse_args()
    if args.key:
        decided_by = [*machine_requirements(), "|", *project_requirements(), "|", Path(__file__).read_text()]
        print(hashlib.sha256("\n".join(decided_by).encode()).hexdigest()[:16])
        return
    wheels = carried()
    args.dest.mkdir(parents=True, exist_ok=True)
    for old in args.dest.glob("*.whl"):
        old.unlink()
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(args.dest), *TARGET,
                    *(f"{n}=={v}" for n, v in wheels.items())], check=True)
    (args.dest / "CARRIED").write_text("".join(f"{n}=={v}\n" for n, v in wheels.items()))
    print(f"carried to {args.dest}: " + ", ".join(f"{n} {v}" for n, v in wheels.items()))


if __name__ == "__main__":
    main()
