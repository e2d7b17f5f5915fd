"""Batch input files: one prompt a line (.txt) or one JSON object a line (.jsonl).

Every line is checked before any work starts, and all bad lines are reported together with
their line numbers. Output names from the file go through `cache.safe_child`, so no line can
write outside the output directory. Items without a seed get one derived from their id, so
reruns and every rank of a distributed run agree on it.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, fields, replace
from pathlib import Path

from musicgen_cli.engine.prompts import slugify
from musicgen_cli.engine.segments import parse_segments, read_segments
from musicgen_cli.engine.settings import GenerateSettings
from musicgen_cli.engine.validate import MAX_SEED, check_seed, name_max
from musicgen_cli.errors import MgenError
from musicgen_cli.store.cache import safe_child
from musicgen_cli.text import check_name, clean_line, read_text

JSONL_SUFFIXES = {".jsonl", ".ndjson"}
_ITEM_KEYS = {"prompt", "duration", "seed", "model", "output"}
_SETTING_KEYS = {f.name for f in fields(GenerateSettings)} - {"seed", "duration"}
_PATH_KEYS = {"melody", "continuation"}
SHOWN_ERRORS = 10
STATE_PREFIX = ".mgen"  # .mgen-batch/, .mgen-lock, .mgen-part-*: mgen's own files in an output folder


class BatchInputError(MgenError):
    """Bad lines in a batch file; nothing was generated."""


@dataclass(frozen=True)
class BatchItem:
    index: int  # position among the file's items, 0-based
    line: int  # 1-based line in the input file
    id: str  # the output name without extension; unique in a batch
    prompt: str
    model: str
    seed: int  # the item's own seed; a batch of several items runs on its first item's seed
    settings: GenerateSettings  # with seed=None: items that share model and settings batch together
    fmt: str = "wav"  # the batch's --format

    def audio_paths(self, out_dir: Path) -> list[Path]:
        """<id>.<fmt>, or <id>-1.<fmt> ... when the item asks for several samples."""
        base = safe_child(out_dir, f"{self.id}.{self.fmt}")
        n = self.settings.num_samples
        return [base] if n == 1 else [base.with_name(f"{base.stem}-{i + 1}.{self.fmt}") for i in range(n)]

    @property
    def group(self) -> tuple[str, GenerateSettings]:
        return (self.model, self.settings)


@dataclass(frozen=True)
class Defaults:
    """What lines don't say: the command line's model, settings and base seed."""

    model: str
    settings: GenerateSettings
    base_seed: int | None = None
    fmt: str = "wav"


def read_items(path: Path | str, defaults: Defaults, out_dir: Path, known_model=None) -> list[BatchItem]:
    """All items of a batch file, or BatchInputError naming every bad line.

    `known_model(name)` raises MgenError for a model that cannot be resolved; it is asked once
    per distinct model so typos are caught before the first model loads.
    """
    path = Path(path)
    text = read_text(path, "batch")
    jsonl = path.suffix.lower() in JSONL_SUFFIXES
    items: list[BatchItem] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    model_ok: dict[str, str | None] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            fields_ = _parse_jsonl(line, path.parent) if jsonl else {"prompt": line}
            item = _make_item(len(items), number, fields_, defaults, out_dir)
            if item.id in seen:
                raise MgenError(f"output name {item.id!r} is already used by line {seen[item.id]}")
            if known_model is not None:
                if item.model not in model_ok:
                    try:
                        known_model(item.model)
                        model_ok[item.model] = None
                    except MgenError as exc:
                        model_ok[item.model] = exc.message
                if model_ok[item.model]:
                    raise MgenError(model_ok[item.model])
        except MgenError as exc:
            errors.append(f"line {number}: {exc.message}")
            continue
        seen[item.id] = number
        items.append(item)
    errors += _name_clashes(items, out_dir)
    if errors:
        shown = "; ".join(errors[:SHOWN_ERRORS])
        more = f"; and {len(errors) - SHOWN_ERRORS} more" if len(errors) > SHOWN_ERRORS else ""
        raise BatchInputError(f"{path}: {len(errors)} bad line(s): {shown}{more}", "fix those lines and run again; nothing was generated")
    if not items:
        raise BatchInputError(f"batch file {path} has no prompts", "write one prompt a line (or a JSON object a line in .jsonl)")
    return items


def _no_constants(name: str):
    raise MgenError(f"{name} is not a number JSON allows; give an ordinary number")


def _parse_jsonl(line: str, base: Path) -> dict:
    try:
        data = json.loads(line, parse_constant=_no_constants)
    except ValueError as exc:
        raise MgenError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise MgenError("expected a JSON object like {\"prompt\": \"...\"}")
    unknown = set(data) - _ITEM_KEYS - _SETTING_KEYS
    if unknown:
        allowed = ", ".join(sorted(_ITEM_KEYS | _SETTING_KEYS))
        raise MgenError(f"unknown key(s) {', '.join(sorted(unknown))} (allowed: {allowed})")
    if "segments" in data:
        _read_item_segments(data, base)
    for key in _PATH_KEYS & set(data):
        if not isinstance(data[key], str):
            raise MgenError(f"{key} must be a file path")
        target = (base / data[key]).expanduser()
        if not target.is_file():
            raise MgenError(f"{key} file {target} does not exist")
        data[key] = target
    return data


def _read_item_segments(data: dict, base: Path) -> None:
    """`"segments"`: a list of `M:SS prompt` lines, or a sections file beside the batch file.
    Its `end` line sets the duration and its first prompt is the item's prompt unless given."""
    value = data["segments"]
    if isinstance(value, str):
        sections = read_segments((base / value).expanduser())
    elif isinstance(value, list) and all(isinstance(line, str) for line in value):
        sections = parse_segments(value, source="segments")
    else:
        raise MgenError("segments must be a list of \"M:SS prompt\" lines or a sections file path")
    data["segments"] = sections.sections
    if sections.end_s is not None:
        data.setdefault("duration", sections.end_s)
    data.setdefault("prompt", sections.sections[0][1])


_KIND_NAMES = {float: "a number", int: "an integer", bool: "true or false", str: "a string"}


def typed_value(key: str, value, kind):
    """`value` checked against the settings field type (bools are not numbers here)."""
    ok = {
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        bool: isinstance(value, bool),
        str: isinstance(value, str),
    }.get(kind, True)
    if not ok:
        raise MgenError(f"{key} must be {_KIND_NAMES[kind]}, not {json.dumps(value)}")
    return float(value) if kind is float else value


# engine.py postpones annotations, so field types are the strings written there.
FIELD_TYPES = {f.name: {"float": float, "int": int, "bool": bool, "str": str}.get(f.type, object) for f in fields(GenerateSettings)}
FIELD_TYPES.update({"duration": float, "seed": int, "model": str, "output": str, "prompt": str})


def _make_item(index: int, line: int, data: dict, defaults: Defaults, out_dir: Path) -> BatchItem:
    data = {k: typed_value(k, v, FIELD_TYPES.get(k, object)) for k, v in data.items()}
    prompt = clean_line(str(data.get("prompt", "")))
    if not prompt:
        raise MgenError("no prompt")
    changes = {k: v for k, v in data.items() if k in _SETTING_KEYS}
    if "duration" in data:
        changes["duration"] = data["duration"]
    settings = replace(defaults.settings, seed=None, **changes)
    # Model-dependent limits (the window) are checked when the model is loaded.
    settings.validate(max_window_s=float("inf"))
    name = str(data.get("output") or f"{index + 1:04d}-{slugify(prompt, 40)}")
    check_name(name, "output")
    if name.lower().endswith((".wav", f".{defaults.fmt}")):
        name = name.rsplit(".", 1)[0]
    safe_child(out_dir, f"{name}.wav")
    if any(part.startswith(STATE_PREFIX) for part in Path(name).parts):
        raise MgenError(f"output name {name!r} enters mgen's own files ({STATE_PREFIX}*)")
    item_id = Path(name).as_posix()
    seed = data.get("seed")
    if seed is None:
        seed = defaults.base_seed + index if defaults.base_seed is not None else zlib.crc32(item_id.encode()) & MAX_SEED
    check_seed(seed)
    return BatchItem(index, line, item_id, prompt, str(data.get("model") or defaults.model), seed, settings, defaults.fmt)


def _name_clashes(items: list[BatchItem], out_dir: Path) -> list[str]:
    """Files two items would both write (after the -N sample suffixes), and names too long to write."""
    errors = []
    owner: dict[Path, BatchItem] = {}
    for item in items:
        for path in item.audio_paths(out_dir):
            for name in (*Path(item.id).parts[:-1], path.name, path.with_suffix(".json").name):
                if len(name.encode()) > name_max(out_dir):
                    errors.append(f"line {item.line}: output name {item.id!r} is too long for the file system ({len(name.encode())} bytes)")
                    break
            first = owner.setdefault(path, item)
            if first is not item:
                errors.append(f"line {item.line}: {path.name} is also written by line {first.line} ({first.id!r})")
    return list(dict.fromkeys(errors))


def make_batches(items: list[BatchItem], max_batch: int) -> list[list[BatchItem]]:
    """Items sharing model and settings, in file order, cut into batches of at most `max_batch`."""
    groups: dict[tuple, list[BatchItem]] = {}
    for item in items:
        groups.setdefault(item.group, []).append(item)
    # A composed piece (sections, endings, loops) is made on its own: its windows are its own.
    sizes = {key: 1 if key[1].composed else max_batch for key in groups}
    return [members[i : i + sizes[key]] for key, members in groups.items() for i in range(0, len(members), sizes[key])]


def by_group(items: list[BatchItem]) -> list[BatchItem]:
    """Items ordered so each model's and each group's items are contiguous (first appearance order)."""
    models = {item.model: n for n, item in reversed(list(enumerate(items)))}
    groups = {item.group: n for n, item in reversed(list(enumerate(items)))}
    return sorted(items, key=lambda it: (models[it.model], groups[it.group], it.index))
