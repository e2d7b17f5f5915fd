"""A model's weights fingerprint: one sha256 that pins exactly which weights made a clip.

Downloads record each file's verified sha256 in the ready marker; the fingerprint hashes
those records. Models without records (imports, random test models) have their weight
files hashed once; the digests are kept beside the marker, keyed by size and mtime, so
later runs do not re-read gigabytes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from musicgen_cli.store.cache import atomic_write_text, file_digest, read_marker

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".th")
DIGEST_CACHE = ".mgen-weights-sha256.json"


def _is_weight(name: str) -> bool:
    return name.endswith(WEIGHT_SUFFIXES)


def _computed(folder: Path) -> dict[str, str]:
    cache_file = folder / DIGEST_CACHE
    try:
        cached = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cached = {}
    digests, fresh = {}, {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and _is_weight(p.name)):
        stat = path.stat()
        key = f"{stat.st_size}:{stat.st_mtime_ns}"
        hit = cached.get(path.name)
        sha = hit["sha256"] if hit and hit.get("key") == key else file_digest(path)
        digests[path.name] = sha
        fresh[path.name] = {"key": key, "sha256": sha}
    if fresh != cached:
        try:
            atomic_write_text(cache_file, json.dumps(fresh, indent=2, sort_keys=True))
        except OSError:
            pass  # a read-only cache still gets its fingerprint, just recomputed next time
    return digests


def weights_fingerprint(folder: Path | str) -> dict:
    """{"sha256", "files", "source"}: "recorded" from a verified download, else "computed"."""
    folder = Path(folder)
    recorded = read_marker(folder).get("files")
    if isinstance(recorded, dict) and all(isinstance(v, dict) and v.get("sha256") for v in recorded.values()):
        digests = {name: info["sha256"] for name, info in recorded.items() if _is_weight(name)}
        source = "recorded"
    else:
        digests, source = _computed(folder), "computed"
    joined = "\n".join(f"{name} {sha}" for name, sha in sorted(digests.items()))
    return {"sha256": hashlib.sha256(joined.encode()).hexdigest(), "files": len(digests), "source": source}
