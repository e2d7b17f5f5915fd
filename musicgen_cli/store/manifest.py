"""The model manifest: friendly keys -> Hugging Face repo ids and cache folders.

Three files, later ones overriding earlier keys:
  manifest.json at the top of the source tree: the models mgen knows (the build copies it into
      the package, so an installed wheel carries it);
  <config folder>/manifest.json: entries the user writes by hand (`mgen models` lists them);
  <cache root>/manifest.user.json: entries mgen registers (downloads of unlisted repos, imports),
      beside the folders they name, so an upgrade never loses them.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from musicgen_cli import config
from musicgen_cli.arch import SHAPES
from musicgen_cli.errors import MgenError, ModelNotFound
from musicgen_cli.store.cache import (
    PACKAGE_DIR,
    PROJECT_ROOT,
    atomic_write_text,
    cache_root,
    config_root,
    in_checkout,
    is_ready,
    safe_child,
)

# A checkout (run in place or installed editable) reads the source; an installed package the build's copy.
SHIPPED_MANIFEST = (PROJECT_ROOT if in_checkout() else PACKAGE_DIR) / "manifest.json"
USER_MANIFEST_NAME = "manifest.user.json"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_REPO_PART = re.compile(r"^[A-Za-z0-9](?:[\w.-]*[A-Za-z0-9_])?$")


def is_repo_id(name: str) -> bool:
    """owner/name as the hub allows it: no '.', '..', '--' or '..' inside, no leading or trailing '.' or '-'."""
    if not _REPO_ID.match(name) or len(name) > 96 + 1 + 96 or ".." in name or "--" in name:
        return False
    return all(_REPO_PART.match(part) for part in name.split("/"))


def check_repo_id(name: str) -> None:
    if not is_repo_id(name):
        raise ModelNotFound(
            f"{name!r} is not a valid repo id", "use the form owner/name with letters, digits, '-', '_' and '.', e.g. facebook/musicgen-small"
        )
_SHAPES = {*SHAPES, None}


@dataclass(frozen=True)
class Capabilities:
    text: bool = True
    melody: bool = False
    stereo: bool = False
    channels: int = 1


@dataclass(frozen=True)
class ModelEntry:
    key: str
    folder: str
    repo_id: str | None = None
    revision: str | None = "main"
    shape: str | None = None
    builder: str | None = None  # set for locally built random-weight models
    files: tuple[str, ...] | None = None  # only these repo files: weights that are no MusicGen (MultiBand Diffusion)
    description: str = ""
    capabilities: Capabilities = field(default_factory=Capabilities)
    source: str = "shipped"  # "shipped" or "user"

    @property
    def random_weights(self) -> bool:
        return self.builder is not None

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("key")
        data.pop("source")
        return data


@dataclass
class Manifest:
    entries: dict[str, ModelEntry]
    root: Path  # the cache root the folders live under

    def folder(self, entry: ModelEntry) -> Path:
        return safe_child(self.root, entry.folder)

    def is_cached(self, entry: ModelEntry) -> bool:
        return is_ready(self.folder(entry))

    def get(self, name: str) -> ModelEntry:
        """A manifest key or a repo id; unknown repo ids get a derived, unsaved entry."""
        if name in self.entries:
            return self.entries[name]
        for entry in self.entries.values():
            if entry.repo_id and entry.repo_id.lower() == name.lower():
                return entry
        if name.startswith(("/", ".", "~")):
            raise ModelNotFound(f"there is no model folder at {name}", "check the path, or give a manifest key or repo id")
        if "/" in name:
            return derived_entry(name)
        raise ModelNotFound(f"unknown model key {name!r}", _suggest(name, list(self.entries)))

    def register(self, entry: ModelEntry) -> ModelEntry:
        """Save an entry to the user manifest (kept across upgrades) and return it."""
        path = self.root / USER_MANIFEST_NAME
        user = _read_json(path) if path.exists() else {"version": 1, "models": {}}
        user.setdefault("models", {})[entry.key] = entry.to_json()
        atomic_write_text(path, json.dumps(user, indent=2, sort_keys=True) + "\n")
        entry = ModelEntry(**{**asdict(entry), "capabilities": entry.capabilities, "source": "user"})
        self.entries[entry.key] = entry
        return entry

    def unregister(self, key: str) -> bool:
        """Drop `key` from the user manifest (a shipped entry of that key shows again on the next load)."""
        path = self.root / USER_MANIFEST_NAME
        if not path.exists():
            return False
        user = _read_json(path)
        if user["models"].pop(key, None) is None:
            return False
        atomic_write_text(path, json.dumps(user, indent=2, sort_keys=True) + "\n")
        self.entries.pop(key, None)
        return True


def derived_entry(repo_id: str, revision: str | None = "main") -> ModelEntry:
    """An entry for a repo id the manifest does not list; its key is the repo name."""
    check_repo_id(repo_id)
    key = repo_id.split("/", 1)[1].lower()
    folder = repo_id.replace("/", "--")
    return ModelEntry(key=key, folder=folder, repo_id=repo_id, revision=revision, source="user")


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}known keys: {', '.join(sorted(known))} (or pass a repo id like facebook/musicgen-small)"


def _read_json(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as exc:
        raise MgenError(f"cannot read manifest {path}: {exc.strerror}", "check the path and its permissions") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MgenError(
            f"{path}:{exc.lineno}:{exc.colno}: invalid JSON ({exc.msg})", "fix the file at that line and column"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise MgenError(f"{path}: expected an object with a \"models\" object", "see mgen's manifest.json for the format")
    return data


def _parse_entry(path: Path, key: str, raw: object, source: str) -> ModelEntry:
    where = f"{path}: model {key!r}"
    if not isinstance(raw, dict):
        raise MgenError(f"{where}: expected an object", "see mgen's manifest.json for the format")
    folder = raw.get("folder")
    if not isinstance(folder, str) or not folder:
        raise MgenError(f"{where}: \"folder\" must be a non-empty string", "name a folder under model-cache/")
    repo_id = raw.get("repo_id")
    if repo_id is not None and (not isinstance(repo_id, str) or not _REPO_ID.match(repo_id)):
        raise MgenError(f"{where}: \"repo_id\" {repo_id!r} is not of the form owner/name", "fix the repo id")
    if repo_id is None and raw.get("builder") is None and source == "shipped":
        raise MgenError(f"{where}: needs a \"repo_id\" or a \"builder\"", "add the Hugging Face repo id")
    if raw.get("shape") not in _SHAPES:
        raise MgenError(f"{where}: \"shape\" must be one of tiny, small, medium, large", "fix the shape")
    caps = raw.get("capabilities") or {}
    if not isinstance(caps, dict) or set(caps) - {"text", "melody", "stereo", "channels"}:
        raise MgenError(f"{where}: \"capabilities\" takes text, melody, stereo, channels", "fix the capabilities")
    files = raw.get("files")
    if files is not None and (not isinstance(files, list) or not files or not all(isinstance(f, str) and f for f in files)):
        raise MgenError(f"{where}: \"files\" must be a list of file names", "list the repo files to fetch")
    known = {"folder", "repo_id", "revision", "shape", "builder", "description"}
    return ModelEntry(
        key=key,
        capabilities=Capabilities(**caps),
        source=source,
        files=tuple(files) if files else None,
        **{k: v for k, v in raw.items() if k in known},
    )


def load_manifest(cache_dir: str | Path | None = None, path: str | Path | None = None) -> Manifest:
    """The shipped manifest (or `path`/MGEN_MANIFEST) merged with the user's entries."""
    root = cache_root(cache_dir)
    shipped = Path(path or config.manifest_path() or SHIPPED_MANIFEST)
    entries: dict[str, ModelEntry] = {}
    files = (("shipped", shipped), ("user", config_root() / "manifest.json"), ("user", root / USER_MANIFEST_NAME))
    for source, file in files:
        if source == "user" and not file.is_file():
            continue
        for key, raw in _read_json(file)["models"].items():
            entries[key] = _parse_entry(file, key, raw, source)
            safe_child(root, entries[key].folder)
    return Manifest(entries=entries, root=root)
