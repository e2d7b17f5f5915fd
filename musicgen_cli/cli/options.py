"""Options shared by the commands, declared once so every command spells and defaults them alike.

The machine flags and the sampling flags are option groups: `@uses(machine=MachineOptions)`
adds every flag of the group to a command and hands the command one dataclass instead.
Sampling defaults are `GenerateSettings`' own.
"""

from __future__ import annotations

import functools
import inspect
import typing
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer

from musicgen_cli.engine.audio import AudioOptions
from musicgen_cli.engine.settings import GenerateSettings
from musicgen_cli.engine.validate import DECODERS, ENGINES, check_threads
from musicgen_cli.errors import MgenError
from musicgen_cli.events import NullReporter, Reporter
from musicgen_cli.ui.console import console, err_console  # noqa: F401  (the commands print through these)

DEFAULTS = GenerateSettings()
DEVICES = ("auto", "cpu", "cuda")
QUANTIZE = ("none", "int8", "int4")

CacheDirOpt = typer.Option(None, "--cache-dir", help="Model cache root (default: MGEN_CACHE_DIR, else model-cache/ in a source checkout, else the user cache directory; `mgen models` shows it).")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")
DurationOpt = typer.Option(DEFAULTS.duration, "--duration", "-d", help="Seconds of audio. Longer than one window is generated in windows.")
NumSamplesOpt = typer.Option(DEFAULTS.num_samples, "--num-samples", "-n", help="Samples generated together in one batched pass.")
WindowOpt = typer.Option(DEFAULTS.window_s, "--window", help="Seconds per generation window for long clips.")
OfflineOpt = typer.Option(False, "--offline", help="Never download; fail with the command that would.")


def _flag(option: Any) -> Any:
    """A group field whose default is the option's own."""
    return field(default=option.default, metadata={"option": option})


@dataclass(frozen=True)
class MachineOptions:
    """The machine a command plans and runs on, and how it uses it."""

    gpu_mem: Optional[list[str]] = _flag(
        typer.Option(None, "--gpu-mem", help="Simulate a GPU of this size (repeat for several), e.g. 8GiB.", rich_help_panel="Machine")
    )
    gpu_capability: Optional[str] = _flag(
        typer.Option(None, "--gpu-capability", help="Compute capability of the simulated GPUs, e.g. 7.5 (default 8.6).", rich_help_panel="Machine")
    )
    ram: Optional[str] = _flag(typer.Option(None, "--ram", help="Simulate this much RAM, e.g. 16GiB.", rich_help_panel="Machine"))
    cores: Optional[int] = _flag(typer.Option(None, "--cores", help="Simulate this many CPU cores.", rich_help_panel="Machine"))
    no_gpu: bool = _flag(typer.Option(False, "--no-gpu", help="Plan and run as if there were no GPU.", rich_help_panel="Machine"))
    reserve: Optional[str] = _flag(
        typer.Option(None, "--reserve", help="VRAM to leave free per GPU (default: 8 % of the card, at least 512MiB).", rich_help_panel="Machine")
    )
    max_vram: Optional[str] = _flag(typer.Option(None, "--max-vram", help="Use at most this much VRAM per GPU.", rich_help_panel="Machine"))
    quantize: Optional[str] = _flag(
        typer.Option(None, "--quantize", help="int8, or int4 (CPU): reduced-precision decoder, faster on a CPU at a measured quality cost (memory-plan shows both).", rich_help_panel="Machine")
    )
    dtype: Optional[str] = _flag(
        typer.Option(None, "--dtype", help="float32 or bfloat16 (default: bfloat16 on a GPU from Ampere on, else float32).", rich_help_panel="Machine")
    )
    device: str = _flag(typer.Option("auto", "--device", help="auto (GPU when there is one), cpu, or cuda.", rich_help_panel="Machine"))
    num_threads: Optional[int] = _flag(
        typer.Option(None, "--num-threads", help="CPU threads for torch (intra- and inter-op).", rich_help_panel="Machine")
    )
    cpu_util_target: Optional[float] = _flag(
        typer.Option(None, "--cpu-util-target", help="Fraction of logical cores to use, e.g. 0.8.", rich_help_panel="Machine")
    )

    def check(self) -> None:
        """Refuse unknown words before anything is probed or loaded."""
        if self.device not in DEVICES:
            raise MgenError(f"unknown device {self.device!r}", "use --device auto, cpu or cuda")
        if self.quantize not in (None, *QUANTIZE):
            raise MgenError(f"unknown quantisation {self.quantize!r}", "use --quantize int8, or int4 on a CPU")
        from musicgen_cli.planning.planner import check_dtype

        check_dtype(self.dtype)
        check_threads(self.num_threads, self.cpu_util_target)
        self.sizes()

    def sizes(self) -> dict[str, Any]:
        """Every size flag in bytes (None when not given); each needs its unit."""
        from musicgen_cli.units import parse_size

        one = {"ram": self.ram, "reserve": self.reserve, "max_vram": self.max_vram}
        sizes: dict[str, Any] = {k: parse_size(v, f"--{k.replace('_', '-')}") if v else None for k, v in one.items()}
        sizes["gpu_mem"] = [parse_size(s, "--gpu-mem") for s in self.gpu_mem or []]
        return sizes

    @property
    def cpu_only(self) -> bool:
        return self.no_gpu or self.device == "cpu"

    def machine(self, cache_dir: Path | None):
        """The probed machine with the simulated parts (--gpu-mem, --ram, --cores, --no-gpu, --device)."""
        from musicgen_cli.planning.hardware import parse_capability, probe, simulate

        self.check()
        sizes = self.sizes()
        capability = parse_capability(self.gpu_capability)
        if self.gpu_capability is not None and not self.gpu_mem:
            raise MgenError("--gpu-capability describes simulated GPUs", "add --gpu-mem, e.g. --gpu-mem 8GiB")
        machine = probe(cache_dir, gpus=not (self.gpu_mem or self.cpu_only))
        if self.device == "cuda" and not machine.gpus and not self.gpu_mem:
            raise MgenError("--device cuda but torch sees no CUDA GPU", "install a CUDA build of torch, or use --device cpu")
        return simulate(
            machine,
            gpu_mem=sizes["gpu_mem"],
            ram=sizes["ram"],
            cores=self.cores,
            no_gpu=self.cpu_only,
            capability=capability,
        )

    def plan_kwargs(self) -> dict[str, Any]:
        """What the planner takes besides the config, the job and the machine."""
        self.check()
        sizes = self.sizes()
        return {
            "dtype": self.dtype,
            "quantize": None if self.quantize in (None, "none") else self.quantize,
            "reserve_bytes": sizes["reserve"],
            "max_vram_bytes": sizes["max_vram"],
        }

    def threads(self) -> tuple[int, int]:
        """Set torch's threads as asked; returns the (intra, inter) now in effect."""
        from musicgen_cli.planning.hardware import configure_threads

        return configure_threads(self.num_threads, self.cpu_util_target)


@dataclass(frozen=True)
class SamplingOptions:
    """How codes are drawn and turned into sound: those fields of `GenerateSettings`, with its defaults."""

    seed: Optional[int] = _flag(
        typer.Option(DEFAULTS.seed, "--seed", help="Random seed; the same seed and settings give the same audio.", rich_help_panel="Sampling")
    )
    temperature: float = _flag(typer.Option(DEFAULTS.temperature, "--temperature", help="Sampling temperature.", rich_help_panel="Sampling"))
    top_k: int = _flag(
        typer.Option(DEFAULTS.top_k, "--top-k", help="Sample among the k most likely codes (MusicGen's default 250).", rich_help_panel="Sampling")
    )
    top_p: float = _flag(typer.Option(DEFAULTS.top_p, "--top-p", help="Nucleus sampling threshold; 0 turns it off.", rich_help_panel="Sampling"))
    guidance: float = _flag(
        typer.Option(DEFAULTS.guidance, "--guidance", help="Classifier-free guidance scale; 1 turns it off.", rich_help_panel="Sampling")
    )
    greedy: bool = _flag(
        typer.Option(DEFAULTS.greedy, "--greedy", help="Pick the most likely code at each step (deterministic, dull).", rich_help_panel="Sampling")
    )
    engine: str = _flag(
        typer.Option(DEFAULTS.engine, "--engine", help=f"{' or '.join(ENGINES)}: mgen's static-cache loop or transformers' generate.", rich_help_panel="Sampling")
    )
    decoder: str = _flag(typer.Option(
        DEFAULTS.decoder, "--decoder", rich_help_panel="Output",
        help=f"{' or '.join(DECODERS)}: EnCodec's decoder, or MultiBand Diffusion (80 U-Net passes a channel; "
        "fewer metallic artefacts; `mgen download mbd` first, built locally for tiny-random models).",
    ))

    def settings(self, **more: Any) -> GenerateSettings:
        """GenerateSettings with these sampling fields and `more` (duration, window, ...)."""
        return GenerateSettings(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **more})


@dataclass(frozen=True)
class ModelOptions:
    """Which model: a size or a manifest key / repo id / folder, never both."""

    size: Optional[str] = _flag(typer.Option(None, "--size", help="Model size: small, medium, large (or any manifest key)."))
    model_key: Optional[str] = _flag(
        typer.Option(None, "--model-key", "-m", help="Manifest key, repo id, or model folder. See `mgen models`.")
    )

    def name(self, default: str = "small") -> str:
        """The model asked for (`default` when neither flag is given)."""
        if self.size and self.model_key:
            raise MgenError("give --size or --model-key, not both", "drop one of them")
        return self.size or self.model_key or default


@dataclass(frozen=True)
class SpreadOptions:
    """Where a batch runs: this process, several through accelerate, or Ray workers."""

    processes: int = _flag(
        typer.Option(1, "--processes", help="Processes to launch through accelerate (one per GPU; CPU processes use gloo).")
    )
    ray: Optional[str] = _flag(typer.Option(
        None, "--ray", metavar="ADDRESS",
        help="Run on Ray workers instead: local (a Ray instance started here), auto (the cluster `ray start` joined here) "
        "or the head's address; this process writes every file. Needs `pip install 'mgen[ray]'`.",
    ))
    ray_workers: Optional[int] = _flag(typer.Option(
        None, "--ray-workers", help="Ray workers to start (default: one per GPU, or one per node where there is none)."
    ))

    def runner(self) -> Callable[..., Any]:
        """run_batch, or run_ray_batch on the cluster `--ray` names."""
        if self.ray is not None and self.processes > 1:
            raise MgenError("--ray and --processes both spread the batch", "use --ray-workers N with --ray, or --processes N alone")
        if self.ray is None:
            from musicgen_cli.jobs.batch import run_batch

            return run_batch
        try:
            from musicgen_cli.jobs.ray_batch import Cluster, run_ray_batch
        except ModuleNotFoundError as exc:
            if exc.name != "ray":
                raise
            raise MgenError("--ray needs Ray, which is not installed", "pip install 'mgen[ray]'") from None
        return functools.partial(run_ray_batch, cluster=Cluster(None if self.ray == "local" else self.ray, self.ray_workers))


@dataclass(frozen=True)
class ClipOptions:
    """What one clip is made of besides the prompt and the sampling: its length, the takes, the
    windows, and the audio it continues or follows."""

    prompt_file: Optional[Path] = _flag(typer.Option(None, "--prompt-file", help="Read the prompt from a text file."))
    lyrics: Optional[Path] = _flag(typer.Option(
        None, "--lyrics", help="Lyrics file: its title names the output and its themes steer the style (MusicGen cannot sing words)."
    ))
    duration: float = _flag(DurationOpt)
    num_samples: int = _flag(NumSamplesOpt)
    continuation: Optional[Path] = _flag(
        typer.Option(None, "--continue", help="Continue this audio file (its codes prompt the model).")
    )
    keep_prompt: bool = _flag(typer.Option(
        DEFAULTS.keep_prompt, "--keep-prompt/--no-keep-prompt",
        help="With --continue: write the given audio then the new part, or only the new part.",
    ))
    melody: Optional[Path] = _flag(typer.Option(None, "--melody", help="Melody to follow (melody models only)."))
    window_s: float = _flag(WindowOpt)
    context_s: float = _flag(typer.Option(
        DEFAULTS.context_s, "--context", help="Seconds of the previous window that prompt the next one (12: audiocraft's extend_stride 18)."
    ))

    def settings(self) -> dict[str, Any]:
        """The GenerateSettings fields of these flags (duration, takes, windows, inputs)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("prompt_file", "lyrics")}


@dataclass(frozen=True)
class LongFormOptions:
    """How a long piece is built: sections, its ending, a loop, re-rolls of a silent end."""

    segments: Optional[Path] = _flag(typer.Option(
        None, "--segments", rich_help_panel="Long form",
        help="Sections file, one `M:SS prompt` line per section and a last `M:SS end`: the piece develops section by section.",
    ))
    ending: str = _flag(typer.Option(
        DEFAULTS.ending, "--ending", rich_help_panel="Long form",
        help="cut; fade (over the last 4 s); outro (the last window is asked to end, then a 0.5 s fade).",
    ))
    loop: bool = _flag(typer.Option(
        DEFAULTS.loop, "--loop", rich_help_panel="Long form",
        help="A seamless loop: the last window returns to the opening prompt and its end is crossfaded (1 s) into the start.",
    ))
    max_rerolls: int = _flag(typer.Option(
        DEFAULTS.max_rerolls, "--max-rerolls", rich_help_panel="Long form",
        help="Regenerate the last window with the next seed, up to this many times, when a composed piece ends in silence.",
    ))
    tail_silence_db: float = _flag(typer.Option(
        DEFAULTS.tail_silence_db, "--tail-silence-db", help="A tail quieter than this (LUFS) is silence.", rich_help_panel="Long form"
    ))
    tail_silence_s: float = _flag(typer.Option(
        DEFAULTS.tail_silence_s, "--tail-silence-s", help="Seconds at the end that are checked for silence.", rich_help_panel="Long form"
    ))

    def settings(self, duration: float) -> tuple[dict[str, Any], Optional[str]]:
        """The GenerateSettings fields of these flags and `duration` (a sections file's end
        replaces it), and the first section's prompt (None without sections)."""
        from musicgen_cli.engine.segments import read_segments

        sections = read_segments(self.segments) if self.segments else None
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "segments"}
        values.update(segments=sections.sections if sections else None, duration=(sections and sections.end_s) or duration)
        return values, sections.sections[0][1] if sections else None


def group_options(group: type) -> dict[str, Any]:
    """Flag name -> the declared typer option, for a group."""
    return {f.name: f.metadata["option"] for f in fields(group)}


def uses(**groups: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add each group's flags to a command; the command receives one dataclass per group.

        @uses(machine=MachineOptions)
        def memory_plan_cmd(size: str = ..., *, machine: MachineOptions) -> None: ...
    """

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        hints = typing.get_type_hints(fn)
        own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in inspect.signature(fn).parameters.values() if p.name not in groups]
        added = []
        for group in groups.values():
            group_hints = typing.get_type_hints(group)
            added += [
                inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=group_hints[name])
                for name, option in group_options(group).items()
            ]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            for arg, group in groups.items():
                kwargs[arg] = group(**{name: kwargs.pop(name) for name in group_options(group)})
            return fn(**kwargs)

        params = own + added
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return wrap


@contextmanager
def reporter_for(silent: bool, title: str = "mgen generate") -> Iterator[Reporter]:
    """The live panel, or nothing for --quiet/--json."""
    if silent:
        yield NullReporter()
        return
    from musicgen_cli.ui.panel import GenerationPanel

    with GenerationPanel(err_console, title) as panel:
        yield panel


# -- Audio output, shared by generate, batch and studio: audiocraft's audio_write defaults ----
_AUDIO = AudioOptions()


@dataclass(frozen=True)
class OutputOptions:
    """How clips become files: format, level, fades (`engine.audio.AudioOptions`' defaults)."""

    fmt: Optional[str] = _flag(typer.Option(None, "--format", help="wav, flac, ogg or mp3 (default: the --out suffix, else wav).", rich_help_panel="Output"))
    subtype: Optional[str] = _flag(typer.Option(None, "--subtype", help="Sample format: PCM_16 (default), PCM_24 or FLOAT (wav only).", rich_help_panel="Output"))
    normalize: str = _flag(typer.Option(
        _AUDIO.normalize, "--normalize", rich_help_panel="Output",
        help="peak (to -1 dBFS), loudness (to -14 LUFS, ITU-R BS.1770), rms, clip, or none "
        "(no scaling: samples past full scale are clipped by PCM, FLAC, Ogg and MP3; FLOAT keeps them).",
    ))
    peak_headroom_db: float = _flag(typer.Option(_AUDIO.peak_headroom_db, "--peak-headroom-db", help="dB below full scale for peak and clip.", rich_help_panel="Output"))
    rms_headroom_db: float = _flag(typer.Option(_AUDIO.rms_headroom_db, "--rms-headroom-db", help="Target RMS in dB below full scale for rms.", rich_help_panel="Output"))
    loudness_headroom_db: float = _flag(typer.Option(_AUDIO.loudness_headroom_db, "--loudness-headroom-db", help="Target loudness in dB below 0 LUFS for loudness.", rich_help_panel="Output"))
    loudness_compressor: bool = _flag(typer.Option(_AUDIO.loudness_compressor, "--loudness-compressor", help="Soft-clip (tanh) after loudness normalisation.", rich_help_panel="Output"))
    mp3_bitrate: int = _flag(typer.Option(_AUDIO.mp3_bitrate, "--mp3-bitrate", help="MP3 bit rate in kb/s (40-320, constant).", rich_help_panel="Output"))
    fade_in: float = _flag(typer.Option(_AUDIO.fade_in_s, "--fade-in", help="Seconds of raised-cosine fade-in.", rich_help_panel="Output"))
    fade_out: float = _flag(typer.Option(_AUDIO.fade_out_s, "--fade-out", help="Seconds of raised-cosine fade-out.", rich_help_panel="Output"))

    def options(self) -> AudioOptions:
        """These flags as AudioOptions, the format as given (None: settled from the output name
        when the request is validated)."""
        return AudioOptions(
            format=self.fmt, subtype=self.subtype, mp3_bitrate=self.mp3_bitrate, normalize=self.normalize,
            peak_headroom_db=self.peak_headroom_db, rms_headroom_db=self.rms_headroom_db,
            loudness_headroom_db=self.loudness_headroom_db, loudness_compressor=self.loudness_compressor,
            fade_in_s=self.fade_in, fade_out_s=self.fade_out,
        )

    def audio(self, out: Path | None = None) -> AudioOptions:
        """One checked AudioOptions, the format settled from --format or the --out suffix (before anything loads)."""
        from dataclasses import replace

        from musicgen_cli.engine.audio import choose_format

        return replace(self.options(), format=choose_format(out, self.fmt)).validate()
