"""`mgen generate --from-sidecar`: everything a sidecar recorded, turned back into a request.

The same model weights (checked by fingerprint), prompt, seed, settings, batch size, dtype,
engine, quantisation and audio options give the same codes and so the same file, byte for
byte, on the same machine. A sidecar is user input (people edit them, or write their own),
so its whole shape is checked first and every problem named, before anything loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

from musicgen_cli.decode.draws import EXPONENTIAL_RACE, draw_for
from musicgen_cli.engine.audio import AudioOptions
from musicgen_cli.engine.settings import GenerateSettings
from musicgen_cli.engine.validate import MAX_SEED
from musicgen_cli.errors import MgenError, ModelNotFound
from musicgen_cli.jobs.batchfile import FIELD_TYPES, typed_value
from musicgen_cli.store.fingerprint import weights_fingerprint
from musicgen_cli.text import TextError, read_text

MAX_SIDECAR_BYTES = 4 * 2**20  # a sidecar is a few KB; a larger file is not one
_PATH_SETTINGS = ("continuation", "melody")
_FIX = "give the .json written beside a clip (or fix the fields named)"


@dataclass(frozen=True)
class Replay:
    prompt: str
    model: str  # the manifest key (or repo id) when this install knows it, else the recorded folder
    settings: GenerateSettings
    options: AudioOptions
    sample_index: int
    dtype: str | None
    quantize: str | None
    engine: str
    device: str
    fingerprint: str | None
    note: str | None = None  # a word for the user: how the model was found, when not by its key
    decoder_sha256: str | None = None  # the MultiBand Diffusion weights that decoded the clip
    draw: str | None = None  # the draw that picked the recorded clip's tokens (decode.draws); None: not recorded

    def draw_note(self, device: str) -> str | None:
        """What the user should know when a replay with the LM on `device` ("cpu", "cuda")
        draws its tokens differently from the recorded clip: the same seed, other tokens."""
        now = draw_for(self.engine, device, self.settings.greedy)
        if self.draw is None or self.draw == now:
            return None
        where = "on a GPU" if self.draw == EXPONENTIAL_RACE else "with --device cpu"
        return (f"the clip was sampled by {self.draw} and this replay on {device.upper()} samples by {now}: "
                f"the same seed gives other tokens, so the audio will not be byte-identical (replay {where} for the same clip)")


class SidecarError(MgenError):
    """A sidecar that cannot be replayed; `problems` lists each one."""

    def __init__(self, path: Path, problems: list[str]):
        super().__init__(f"sidecar {path} cannot be replayed: {'; '.join(problems)}", _FIX)
        self.problems = problems


def _kind(value, *kinds: type, none: bool = False) -> bool:
    if value is None:
        return none
    return isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)


def _settings(record, problems: list[str]) -> dict:
    """The GenerateSettings fields of a sidecar's `settings`, typed; problems appended."""
    if not isinstance(record, dict):
        problems.append("settings must be a JSON object")
        return {}
    names = {f.name for f in fields(GenerateSettings)}
    values: dict = {}
    for key, value in record.items():
        if key not in names:
            problems.append(f"settings.{key} is not a setting")
            continue
        if value is None:
            values[key] = None
            continue
        try:
            if key in _PATH_SETTINGS:
                if not isinstance(value, str):
                    raise MgenError(f"{key} must be a file path")
                value = Path(value)
            elif key == "segments":
                value = _segments(value)
            else:
                value = typed_value(key, value, FIELD_TYPES.get(key, object))
        except MgenError as exc:
            problems.append(f"settings.{exc.message}")
            continue
        values[key] = value
    return values


def _segments(value) -> tuple[tuple[float, str], ...]:
    ok = isinstance(value, list) and all(
        isinstance(pair, list) and len(pair) == 2 and _kind(pair[0], int, float) and isinstance(pair[1], str) for pair in value
    )
    if not ok:
        raise MgenError('segments must be a list of [start seconds, "prompt"] pairs')
    return tuple((float(start), prompt) for start, prompt in value)


def _load(path: Path) -> dict:
    try:
        meta = json.loads(read_text(path, "sidecar", max_bytes=MAX_SIDECAR_BYTES))
    except TextError as exc:
        raise MgenError(exc.message, exc.fix) from None
    except ValueError as exc:  # json.JSONDecodeError
        raise SidecarError(path, [f"it is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"]) from None
    if not isinstance(meta, dict):
        raise SidecarError(path, ["it is not a JSON object"])
    return meta


def read_replay(path: Path | str, known_model: Callable[[str], bool] | None = None) -> Replay:
    """The request in sidecar `path`, or one error naming every reason it cannot be re-run.

    The model is found by its manifest key (or repo id) through this install's cache when
    `known_model` says the name is known; the folder the sidecar recorded is the fallback.
    """
    path = Path(path)
    meta = _load(path)
    problems: list[str] = []
    prompt = meta.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        problems.append("prompt must be a non-empty string" if "prompt" in meta else "prompt is missing")
    model = meta.get("model")
    if not isinstance(model, dict):
        problems.append("model must be a JSON object" if "model" in meta else "model is missing")
        model = {}
    for key in ("key", "repo_id", "folder"):
        if not _kind(model.get(key), str, none=True):
            problems.append(f"model.{key} must be a string")
    fingerprint = model.get("weights_fingerprint")
    if not (fingerprint is None or isinstance(fingerprint, dict) and _kind(fingerprint.get("sha256"), str, none=True)):
        problems.append("model.weights_fingerprint must be an object with a sha256 string")
        fingerprint = None
    decoder = meta.get("decoder")
    if not (decoder is None or isinstance(decoder, dict) and _kind(decoder.get("weights_sha256"), str, none=True)):
        problems.append("decoder must be an object with a weights_sha256 string")
        decoder = None
    if "settings" not in meta:
        problems.append("settings is missing")
    values = _settings(meta.get("settings", {}), problems)
    seed = meta.get("seed")  # the seed actually used: a clip made without --seed replays too
    if not (_kind(seed, int) and 0 <= seed <= MAX_SEED):
        problems.append(f"seed must be an integer from 0 to {MAX_SEED}" if "seed" in meta else "seed is missing")
    else:
        values["seed"] = seed
    index = meta.get("sample_index", 0)
    count = values.get("num_samples", 1)
    if not _kind(index, int) or not _kind(count, int) or not 0 <= index < max(count, 1):
        problems.append(f"sample_index must be an integer from 0 to {count - 1 if _kind(count, int) else 'num_samples - 1'}")
    for key in ("dtype", "quantize", "device", "draw"):
        if not _kind(meta.get(key), str, none=True):
            problems.append(f"{key} must be a string")
    batch = meta.get("batch")
    if batch is not None and not (isinstance(batch, dict) and _kind(batch.get("size", 1), int)):
        problems.append("batch must be an object with an integer size")
        batch = None
    audio_record = meta.get("audio")
    if not isinstance(audio_record, (dict, type(None))):
        problems.append("audio must be a JSON object")
        audio_record = None
    options = None
    try:
        options = AudioOptions.from_record(audio_record or {}).validate()
    except (MgenError, TypeError, AttributeError, ValueError) as exc:  # a hand-edited record of the wrong types
        problems.append(f"audio: {exc.message if isinstance(exc, MgenError) else exc}")
    settings = None
    if not problems:
        try:
            settings = GenerateSettings(**values)
            settings.validate()
        except MgenError as exc:
            problems.append(f"settings.{exc.message}")
    if problems:
        raise SidecarError(path, problems)
    if (batch or {}).get("size", 1) > 1:
        raise MgenError(f"{path.name} was generated in a batch of {batch['size']} prompts",
                        "re-run the batch with --max-batch 1 to get clips --from-sidecar can reproduce")
    name, note = _model_name(path, model, known_model)
    return Replay(
        prompt=prompt,
        model=name,
        settings=settings,
        options=options,
        sample_index=index,
        dtype=meta.get("dtype"),
        quantize=meta.get("quantize"),
        engine=settings.engine,
        device=str(meta.get("device") or "cpu").split(":")[0],
        fingerprint=(fingerprint or {}).get("sha256"),
        note=note,
        decoder_sha256=(decoder or {}).get("weights_sha256") if settings.decoder == "mbd" else None,
        draw=meta.get("draw"),
    )


def _model_name(path: Path, model: dict, known_model: Callable[[str], bool] | None) -> tuple[str, str | None]:
    """By key or repo id through this install's cache; the recorded folder only when neither is known here."""
    for key in ("key", "repo_id"):
        name = model.get(key)
        if name and (known_model is None or known_model(name)):
            return name, None
    folder = model.get("folder")
    if folder and Path(folder).is_dir():
        named = model.get("key") or model.get("repo_id")
        why = f"{named!r} is not known to this install" if named else "the sidecar names no model key"
        return folder, f"{why}; using the folder the sidecar recorded, {folder}"
    raise MgenError(f"{path.name} names no model that exists here", "import or download the model it names")


def check_weights(sha256: str | None, model: str, folder: Path | str) -> None:
    """Refuse to 'reproduce' a clip with other weights than the ones (`sha256`) that made it."""
    if not sha256 or not Path(folder).is_dir():
        return  # a manifest key: checked once it has resolved to a folder
    have = weights_fingerprint(folder)["sha256"]
    if have != sha256:
        raise MgenError(f"the weights of {model} are not the ones that made this clip "
                        f"(fingerprint {have[:12]}, sidecar {sha256[:12]})",
                        "download or import the model revision the sidecar records")


def check_decoder(sha256: str | None, model: str, cache_dir: Path | str | None) -> None:
    """Refuse to replay a MultiBand Diffusion clip with other diffusion weights than the ones
    (`sha256`) that decoded it; a checkpoint not downloaded yet is fetched by the run itself."""
    if not sha256:
        return
    from musicgen_cli.engine.mbd import checkpoint_digest  # torch: only for a diffusion clip
    from musicgen_cli.engine.musicgen import diffusion_checkpoint

    try:
        path = diffusion_checkpoint(model, cache_dir=cache_dir, download=False)
    except ModelNotFound:
        return
    have = checkpoint_digest(path)
    if have != sha256:
        raise MgenError(f"the MultiBand Diffusion weights {path} are not the ones that decoded this clip "
                        f"(sha256 {have[:12]}, sidecar {sha256[:12]})",
                        f"put the {path.name} the sidecar records in {path.parent} (mgen download mbd fetches the released one)")
