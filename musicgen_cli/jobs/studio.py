"""`mgen studio`'s session: one loaded model, settings changed by commands, takes one after another.

The terminal side (ui/studio.py) feeds each line to `Studio.handle` and renders the `Reply`;
the engine's progress goes to the Reporter that the `working` callback opens around each load
and take (the live panel in a terminal). Nothing here prints.

Takes are `take-NNN-<slug>.<ext>` with their sidecars in the session folder, written by
jobs/outputs.py like `mgen generate`'s clips. An interrupted take writes nothing; a failing one
(out of memory, a model error) is reported and the model stays loaded.
"""

from __future__ import annotations

import gc
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from musicgen_cli.arch import WINDOW_SECONDS
from musicgen_cli.engine.audio import AudioOptions
from musicgen_cli.engine.musicgen import (
    MAX_SEED,
    GenerateSettings,
    GenerationResult,
    MusicGen,
    load_model,
)
from musicgen_cli.engine.segments import read_segments
from musicgen_cli.errors import Interrupted, MgenError
from musicgen_cli.events import NullReporter, Reporter
from musicgen_cli.jobs import playback
from musicgen_cli.jobs.outputs import sidecar_path
from musicgen_cli.jobs.request import Request
from musicgen_cli.jobs.run import Written, rendered_clips, write
from musicgen_cli.jobs.studio_lines import (
    COMMANDS,
    FIELDS,
    check_format,
    check_normalize,
    on_off,
    parse_value,
)
from musicgen_cli.jobs.takes import (
    Take,
    first_free_number,
    keep_take,
    splice,
    take_paths,
)
from musicgen_cli.text import clean_line

Working = Callable[[str], AbstractContextManager[Reporter]]


@dataclass(frozen=True)
class StudioOptions:
    """What stays fixed for a session: where takes go and how models are planned and loaded."""

    model: str
    out_dir: Path
    fmt: str = "wav"
    subtype: str | None = None
    normalize: str = "peak"
    cache_dir: Path | None = None
    machine: Any = None  # planning.hardware.Machine; probed once when None
    dtype: str | None = None
    quantize: str | None = None
    reserve_bytes: int | None = None
    max_vram_bytes: int | None = None
    download: bool = True
    extra: dict = field(default_factory=dict)  # more sidecar fields (e.g. torch threads)


@dataclass
class Reply:
    """What one line did. kind: take, stopped, failed, error, info, settings, takes, plan, help, quit, none."""

    kind: str
    text: str = ""
    take: Take | None = None
    written: list[Written] = field(default_factory=list)  # a take's files and their sidecar records
    data: Any = None


def _null_working(title: str) -> AbstractContextManager[Reporter]:
    return nullcontext(NullReporter())


class Studio:
    def __init__(self, options: StudioOptions, settings: GenerateSettings = GenerateSettings(), working: Working | None = None):
        self.options = options
        self.settings = settings
        self.fmt = check_format(options.fmt)
        self.normalize = check_normalize(options.normalize)
        self.working = working or _null_working
        self.model_key = options.model
        self.mg: MusicGen | None = None
        self.loads = 0
        self.takes: list[Take] = []
        self.last_prompt: str | None = None
        self._last_clip: tuple[np.ndarray, int] | None = None  # the last take's first clip, before normalising
        self._machine = options.machine
        self._next = first_free_number(options.out_dir)
        settings.validate(WINDOW_SECONDS)  # before loading anything; takes check again against the model

    # -- the model ----------------------------------------------------------------------------
    def start(self) -> MusicGen:
        """Plan and load the session's model (the slow part, once)."""
        self._resolve(self.model_key)  # a misspelt or missing model is one error line, before any panel
        self._load(self.model_key)
        return self._model()

    def _machine_now(self):
        if self._machine is None:
            from musicgen_cli.planning.hardware import probe

            self._machine = probe(self.options.cache_dir)
        return self._machine

    def _job(self, settings: GenerateSettings | None = None, prompt: str | None = None):
        from musicgen_cli.planning.planner import Job

        s = settings or self.settings
        job = Job.from_settings(s, prompts=() if prompt is None else (prompt,))
        return replace(job, duration_s=min(s.duration, s.window_s))

    def _fit(self, settings: GenerateSettings, prompt: str) -> None:
        """Plan again when a take asks for more than the loaded plan assumed (a longer /duration,
        more /samples, the audio an /extend continues, a longer prompt); load again only if the
        placement moves."""
        from musicgen_cli.planning.planner import Job, plan_memory, same_placement

        mg, job = self._model(), self._job(settings, prompt)
        planned = mg.plan.job
        if (job.duration_s <= planned.duration_s and job.num_samples <= planned.num_samples and job.prompt_s <= planned.prompt_s
                and job.guidance <= planned.guidance and job.window_s <= planned.window_s
                and job.text_tokens <= planned.text_tokens and (job.decoder == "encodec" or planned.decoder == "mbd")):
            return
        o = self.options
        covering = Job.covering_jobs([job, planned])
        plan = plan_memory(mg.loaded.config, covering, self._machine_now(), dtype=o.dtype, quantize=o.quantize,
                           reserve_bytes=o.reserve_bytes, max_vram_bytes=o.max_vram_bytes)
        if not plan.uses_gpu:
            from musicgen_cli.engine.cpu_probe import plan_cpu_kernel

            plan_cpu_kernel(plan, mg.loaded.config, o.cache_dir)
        if same_placement(plan, mg.plan):
            if plan.diffusion_device != mg.plan.diffusion_device:
                mg.diffusion = None  # loaded again where this plan puts it, at the next diffusion decode
            mg.plan = mg.loaded.plan = plan
            return
        self._free()
        _release_memory()
        self._load(self.model_key, covering)

    def _load(self, name: str, job=None) -> None:
        o = self.options
        with self.working(f"mgen studio: loading {name}") as reporter:
            mg = load_model(
                name, cache_dir=o.cache_dir, job=job or self._job(), machine=self._machine_now(), dtype=o.dtype,
                quantize=o.quantize, reserve_bytes=o.reserve_bytes, max_vram_bytes=o.max_vram_bytes,
                download=o.download, reporter=reporter,
            )
        mg.reporter = NullReporter()  # the load's panel is closed; each take brings its own
        self.mg, self.model_key = mg, name
        self.loads += 1

    def _model(self) -> MusicGen:
        if self.mg is None:
            raise MgenError("no model is loaded", "load one: /model KEY")
        return self.mg

    def _free(self) -> None:
        self.mg = None
        _release_memory()

    # -- lines --------------------------------------------------------------------------------
    def handle(self, line: str) -> Reply:
        """Run one line: a prompt makes a take, `/command args` runs a command. Never raises for user errors."""
        line = clean_line(line)
        if not line:
            return Reply("none")
        try:
            if not line.startswith("/"):
                return self.take(line)
            name, _, arg = line[1:].partition(" ")
            return self._command(name.lower(), arg.strip())
        except MgenError as exc:
            return Reply("error", str(exc))
        except OSError as exc:  # a folder that went away or filled up: this line fails, the session goes on
            return Reply("error", f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}")
        except KeyboardInterrupt:
            return Reply("stopped", "stopped")

    def _command(self, name: str, arg: str) -> Reply:
        if name in FIELDS:
            attr, kind, example = FIELDS[name]
            return self._set(name, **{attr: parse_value(arg, kind, name, example)})
        if name == "seed":
            if arg.lower() == "random":
                return self._set(name, seed=None)
            return self._set(name, seed=parse_value(arg, int, name, "7"))
        if name == "greedy":
            return self._set(name, greedy=on_off(arg, name))
        if name == "format":
            self.fmt = check_format(arg.lower())
            return Reply("info", f"set format to {self.fmt}")
        if name == "normalize":
            self.normalize = check_normalize(arg.lower())
            return Reply("info", f"set normalize to {self.normalize}")
        if name == "melody":
            return self._melody(arg)
        if name == "segments":
            return self._segments(arg)
        if name == "ending":
            return self._set(name, ending=arg.lower())
        if name == "decoder":
            return self._decoder(arg.lower())
        if name == "settings":
            return Reply("settings", data=self.describe())
        if name == "again":
            return self._again()
        if name == "extend":
            return self._extend(arg)
        if name == "model":
            return self._swap(arg)
        if name == "plan":
            return self._plan()
        if name == "takes":
            return Reply("takes", data=list(self.takes))
        if name == "play":
            return self._play(arg)
        if name == "keep":
            return self._keep(arg)
        if name == "help":
            return Reply("help", data=COMMANDS)
        if name in ("quit", "exit"):
            return Reply("quit")
        import difflib

        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        raise MgenError(f"unknown command /{name}", f"did you mean /{close[0]}? (/help lists them)" if close else "type /help for the commands")

    def _decoder(self, name: str) -> Reply:
        """/decoder: MultiBand Diffusion's checkpoint is found (built, or fetched when allowed)
        now, as generate does before loading; the next take is planned again with it."""
        if name == "mbd":
            from musicgen_cli.engine.musicgen import diffusion_checkpoint

            with self.working("mgen studio: MultiBand Diffusion") as reporter:
                diffusion_checkpoint(self.model_key, cache_dir=self.options.cache_dir, download=self.options.download, reporter=reporter)
        return self._set("decoder", decoder=name)

    def _set(self, name: str, **change) -> Reply:
        new = replace(self.settings, **change)
        new.validate(self.mg.max_window_s if self.mg else WINDOW_SECONDS)
        self.settings = new
        value = next(iter(change.values()))
        return Reply("info", f"set {name} to {'random' if value is None else value}")

    def describe(self) -> dict[str, Any]:
        """The settings the next take uses, and the session's facts."""
        s = asdict(self.settings)
        return {
            "model": self.model_key,
            "model loads": self.loads,
            "out dir": str(self.options.out_dir),
            "duration": s["duration"],
            "seed": "random" if s["seed"] is None else s["seed"],
            "temperature": s["temperature"],
            "top-k": s["top_k"],
            "top-p": s["top_p"],
            "guidance": s["guidance"],
            "greedy": "on" if s["greedy"] else "off",
            "samples": s["num_samples"],
            "format": self.fmt,
            "normalize": self.normalize,
            "melody": str(s["melody"]) if s["melody"] else "off",
            "decoder": s["decoder"],
        }

    # -- takes --------------------------------------------------------------------------------
    def take(self, prompt: str, *, seed: int | None = None, duration: float | None = None, extends: Take | None = None) -> Reply:
        """Generate and write one take with the current settings (and the given changes)."""
        mg = self._model()
        settings = self.settings
        if seed is not None:
            settings = replace(settings, seed=seed)
        if duration is not None:
            settings = replace(settings, duration=duration)
        if extends is not None:
            settings = replace(settings, continuation=extends.files[0])
        settings.validate(mg.max_window_s)
        self._fit(settings, prompt)
        mg = self._model()
        number = self._next
        paths = take_paths(self.options.out_dir, number, prompt, self.fmt, settings.num_samples)
        try:
            with self.working(f"mgen studio: take {number}") as reporter:
                mg.reporter = reporter
                result = mg.generate(prompt, settings)
                raw = result.clips[0]
                if extends is not None and self._last_clip is not None:
                    result = splice(result, *self._last_clip)
                    raw = result.clips[0]
                written = self._write(result, mg, paths, number, extends, reporter)
        except Interrupted as exc:
            return Reply("stopped", exc.message)
        except KeyboardInterrupt:
            return Reply("stopped", "stopped; nothing was written")
        except MgenError:
            raise
        except Exception as exc:  # out of memory, a model error: this take fails, the model stays
            _release_memory()
            return Reply("failed", _failure(exc, "the take") + "; the model is still loaded")
        finally:
            mg.reporter = NullReporter()
        self._next = number + 1
        take = Take(
            number=number, prompt=prompt, seed=result.seed, duration_s=raw.shape[-1] / result.sample_rate,
            files=paths, model=self.model_key, extends=extends.number if extends else None,
        )
        self.takes.append(take)
        self.last_prompt = prompt
        self._last_clip = (raw, result.sample_rate)
        return Reply("take", take=take, written=written)

    def _write(self, result: GenerationResult, mg: MusicGen, paths: list[Path], number: int, extends: Take | None,
               reporter: Reporter) -> list[Written]:
        studio = {"take": number, "model_loads": self.loads, "extends_take": extends.number if extends else None}
        try:
            # --subtype belongs to the session's starting format; a /format change takes that format's default.
            subtype = self.options.subtype if self.fmt == self.options.fmt else None
            options = AudioOptions(format=self.fmt, subtype=subtype, normalize=self.normalize).validate()
            request = Request(prompts=(result.prompts[0],), settings=result.settings, audio=options, paths=tuple(paths),
                              extra={**self.options.extra, "studio": studio})
            return write(rendered_clips(result, mg, request), request, reporter)
        except BaseException:
            # Each file is atomic; a take of several clips is all or nothing too.
            for path in paths:
                path.unlink(missing_ok=True)
                sidecar_path(path).unlink(missing_ok=True)
            raise

    def _last(self) -> Take:
        if not self.takes:
            raise MgenError("there is no take yet", "type a prompt first")
        return self.takes[-1]

    def _again(self) -> Reply:
        last = self._last()
        return self.take(self.last_prompt or last.prompt, seed=(last.seed + 1) % (MAX_SEED + 1))

    def _extend(self, arg: str) -> Reply:
        last = self._last()
        seconds = parse_value(arg, float, "extend", "5") if arg else None
        return self.take(last.prompt, duration=seconds, extends=last)

    def _melody(self, arg: str) -> Reply:
        if arg.lower() in ("", "off", "none"):
            return self._set("melody", melody=None)
        if self.mg is not None and not self.mg.is_melody:
            raise MgenError(f"model {self.model_key!r} takes no melody", "load a melody model first, e.g. /model melody")
        return self._set("melody", melody=Path(arg).expanduser())  # the settings' check refuses unusable files now

    def _segments(self, arg: str) -> Reply:
        if arg.lower() in ("", "off", "none"):
            return self._set("segments", segments=None)
        sections = read_segments(Path(arg).expanduser())
        return self._set("segments", segments=sections.sections, duration=sections.end_s or self.settings.duration)

    def _swap(self, key: str) -> Reply:
        if not key:
            raise MgenError("/model needs a model", "e.g. /model small (mgen models lists them)")
        old = self.model_key
        self._resolve(key)  # unknown or undownloadable names fail here, with the old model still loaded
        self._free()
        try:
            self._load(key)
        except KeyboardInterrupt:
            return Reply("stopped", f"stopped loading {key}; no model is loaded (/model KEY loads one)")
        except Exception as exc:
            _release_memory()
            why = str(exc) if isinstance(exc, MgenError) else _failure(exc, "loading")
            try:
                self._load(old)
            except Exception:
                return Reply("failed", f"could not load {key}: {why}; no model is loaded (/model KEY loads one)")
            return Reply("failed", f"could not load {key}: {why}; {old} is loaded again")
        mg = self._model()
        note = ""
        if self.settings.melody is not None and not mg.is_melody:
            self.settings = replace(self.settings, melody=None)
            note = "; melody off (this model takes none)"
        return Reply("info", f"loaded {key}: {mg.channels} channel(s), {mg.sample_rate} Hz{note}")

    def _resolve(self, key: str) -> None:
        """The model's folder, downloaded or built when needed, before the loaded one is freed."""
        if Path(key).is_dir():
            return
        from musicgen_cli.store.manifest import load_manifest
        from musicgen_cli.store.models import model_folder

        manifest = load_manifest(self.options.cache_dir)
        entry = manifest.get(key)
        if manifest.is_cached(entry):
            return
        with self.working(f"mgen studio: {key}") as reporter:
            model_folder(manifest, entry, download=self.options.download, reporter=reporter)

    def _plan(self) -> Reply:
        from musicgen_cli.planning.planner import plan_memory

        mg = self._model()
        o = self.options
        plan = plan_memory(
            mg.loaded.config, self._job(), self._machine_now(), dtype=o.dtype, quantize=o.quantize,
            reserve_bytes=o.reserve_bytes, max_vram_bytes=o.max_vram_bytes,
        )
        s = self.settings
        return Reply("plan", f"Memory plan: {self.model_key}, {s.duration:g} s x {s.num_samples}", data=plan)

    # -- files --------------------------------------------------------------------------------
    def _take_numbered(self, arg: str) -> Take:
        if not arg:
            return self._last()
        number = parse_value(arg, int, "play", "1")
        for take in self.takes:
            if take.number == number:
                return take
        raise MgenError(f"there is no take {number}", "/takes lists them")

    def _play(self, arg: str) -> Reply:
        take = self._take_numbered(arg)
        for path in take.files:
            player = playback.play(path)
            if player is None:
                return Reply("info", f"no audio player found (pip install 'mgen[play]', or install ffplay); take {take.number} is {path}")
        return Reply("info", f"played take {take.number} with {player}: {', '.join(p.name for p in take.files)}")

    def _keep(self, arg: str) -> Reply:
        number, _, name = arg.partition(" ")
        if not number or not name.strip():
            raise MgenError("/keep needs a take number and a name", "e.g. /keep 3 intro")
        take = self._take_numbered(number)
        kept = keep_take(take, name.strip(), self.options.out_dir)
        return Reply("info", f"kept take {take.number} as {', '.join(str(p) for p in kept)}", data=kept)

def _release_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _failure(exc: BaseException, what: str) -> str:
    text = (f"{type(exc).__name__}: {exc}".splitlines() or [type(exc).__name__])[0]
    if "out of memory" in str(exc).lower() or type(exc).__name__ == "OutOfMemoryError":
        return f"{what} ran out of memory ({text}) — lower /duration or /samples"
    return f"{what} failed ({text})"
