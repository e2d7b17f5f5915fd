"""`mgen generate --from-sidecar`: everything a sidecar recorded, turned back into a request.

The same model weights (checked by fingerprint), prompt, seed, settings, batch size, dtype,
engine, quantisation and audio options give the same codes and so the same file, byte for
byte, on the same machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

from musicgen_cli.engine.audio import AudioOptions
from musicgen_cli.engine.settings import GenerateSettings
from musicgen_cli.errors import MgenError
from musicgen_cli.store.fingerprint import weights_fingerprint


@dataclass(frozen=True)
class Replay:
    prompt: str
    model: str  # the recorded folder when it still exists, else the manifest key
    settings: GenerateSettings
    options: AudioOptions
    sample_index: int
    dtype: str | None
    quantize: str | None
    engine: str
    device: str
    fingerprint: str | None


def read_replay(path: Path | str) -> Replay:
    """The request in sidecar `path`, or one clear error saying why it cannot be re-run."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        settings_record = meta["settings"]
        model = meta["model"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MgenError(f"cannot read sidecar {path}: {exc}", "give the .json written beside a clip") from None
    if (meta.get("batch") or {}).get("size", 1) > 1:
        raise MgenError(f"{path.name} was generated in a batch of {meta['batch']['size']} prompts",
                        "re-run the batch with --max-batch 1 to get clips --from-sidecar can reproduce")
    names = {f.name for f in fields(GenerateSettings)}
    values = {k: v for k, v in settings_record.items() if k in names}
    for key in ("continuation", "melody"):
        if values.get(key):
            values[key] = Path(values[key])
    folder = model.get("folder")
    name = folder if folder and Path(folder).is_dir() else model.get("key") or model.get("repo_id")
    if not name:
        raise MgenError(f"{path.name} names no model that exists here", "import or download the model it names")
    fingerprint = (model.get("weights_fingerprint") or {}).get("sha256")
    return Replay(
        prompt=meta["prompt"],
        model=str(name),
        settings=GenerateSettings(**values),
        options=AudioOptions.from_record(meta.get("audio") or {}),
        sample_index=int(meta.get("sample_index", 0)),
        dtype=meta.get("dtype"),
        quantize=meta.get("quantize"),
        engine=values.get("engine", "fast"),
        device=str(meta.get("device") or "cpu").split(":")[0],
        fingerprint=fingerprint,
    )


def check_weights(sha256: str | None, model: str, folder: Path | str) -> None:
    """Refuse to 'reproduce' a clip with other weights than the ones (`sha256`) that made it."""
    if not sha256 or not Path(folder).is_dir():
        return  # a manifest key: checked once it has resolved to a folder
    have = weights_fingerprint(folder)["sha256"]
    if have != sha256:
        raise MgenError(f"the weights of {model} are not the ones that made this clip "
                        f"(fingerprint {have[:12]}, sidecar {sha256[:12]})",
                        "download or import the model revision the sidecar records")
