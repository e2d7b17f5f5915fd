"""The generation engine: load a model once by plan, then generate clips many times.

    from musicgen_cli import load_model, GenerateSettings
    mg = load_model("small")
    result = mg.generate("jazz trio", GenerateSettings(duration=8, seed=1))

Clips are made by the one windowed loop (engine/longform.py): each new window is prompted
with the last `context_s` seconds (12 s: audiocraft's `extend_stride=18`) of codes generated so
far, a melody is read from each window's start, and the codes are decoded once at the end so
the audio has no seams.

`duration` is always the seconds of new music. A continuation writes the given audio in
front of it (`keep_prompt`) or only the new part; audiocraft instead counts the prompt
inside its duration (the compat layer converts).
"""

from __future__ import annotations

import functools
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from musicgen_cli.arch import is_melody, max_window_seconds
from musicgen_cli.engine import audio, codec
from musicgen_cli.engine.settings import GenerateSettings
from musicgen_cli.engine.validate import MAX_SEED, check_finite
from musicgen_cli.errors import MgenError, ModelNotFound
from musicgen_cli.events import NullReporter, Reporter
from musicgen_cli.planning.estimates import MAX_TEXT_TOKENS
from musicgen_cli.store.manifest import ModelEntry, load_manifest


@dataclass
class GenerationResult:
    clips: list[np.ndarray]  # each [channels, samples] float32
    sample_rate: int
    prompts: list[str]  # the prompt of each clip
    seed: int
    settings: GenerateSettings
    timings: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    peaks: dict[str, float] = field(default_factory=dict)
    codes: torch.Tensor | None = None  # [batch, K, frames], prompt included; never written
    windows: list[dict] = field(default_factory=list)  # start_s, prompt_frames, new_frames
    composition: dict | None = None  # sections, windows, re-rolls, ending and loop of a composed piece
    engine: str = ""  # the engine that ran ("reference" when the fast loop cannot run the model)
    decoder: dict | None = None  # MultiBand Diffusion's weights and schedule when it made the audio

    @property
    def steps_per_s(self) -> float:
        gen = self.timings.get("generate", 0.0)
        return self.steps / gen if gen else 0.0

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio per second of wall time spent generating and decoding."""
        spent = self.timings.get("generate", 0.0) + self.timings.get("decode", 0.0)
        return self.settings.duration / spent if spent else 0.0


# T5's trained context; its relative positions would accept more, uselessly. The planner budgets it.
DEFAULT_TEXT_TOKENS = MAX_TEXT_TOKENS
CHARS_PER_TOKEN = 32  # more than any T5 piece: text beyond limit x this cannot reach the first `limit` tokens


def text_token_limit(tokenizer, config) -> int:
    """The most prompt tokens the text encoder is given: its configured positions, else the tokenizer's."""
    limit = getattr(config.text_encoder, "n_positions", None) or getattr(tokenizer, "model_max_length", None)
    return int(limit) if limit and limit < 1_000_000 else DEFAULT_TEXT_TOKENS


class MusicGen:
    """A loaded model; `generate` may be called many times."""

    def __init__(self, loaded, entry: ModelEntry | None, folder: Path, reporter: Reporter | None = None):
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.plan = loaded.plan
        self.entry = entry
        self.folder = folder
        self.reporter = reporter or NullReporter()
        self.lease = None  # the shared lock on a cached model's folder, held as long as this object
        self.sample_rate = int(self.model.config.audio_encoder.sampling_rate)
        self.channels = codec.channels_of(self.model)
        self.frame_rate = codec.frame_rate(self.model)
        self.is_melody = is_melody(self.model.config)
        self.max_window_s = max_window_seconds(self.model.config)
        self.diffusion = None  # engine.mbd.Checkpoint, loaded for the first --decoder mbd
        self.cache_dir: str | Path | None = None  # where the CPU probe a run corrects is stored

    def load_diffusion(self, download: bool = True):
        """MultiBand Diffusion for this model's codec (the random-weight one for random models),
        on the device the plan gives it (the codec's when the plan was made without it); loaded once."""
        from musicgen_cli.engine import mbd

        if self.diffusion is None:
            path = mbd.checkpoint_path(self.entry, self.folder, download=download, reporter=self.reporter)
            # the planner puts it beside EnCodec, or on the CPU when it does not fit there
            on_cpu = self.plan.diffusion_device == "cpu"
            device = torch.device("cpu") if on_cpu else next(self.model.audio_encoder.parameters()).device
            self.reporter.phase("load", f"MultiBand Diffusion {path.parent.name} on {device}")
            checkpoint = mbd.load_checkpoint(path)
            mbd.check_codec(checkpoint, self.model.audio_encoder)
            self.diffusion = checkpoint.to(device)
        return self.diffusion

    def decode(self, codes: torch.Tensor, settings: GenerateSettings, seed: int,
               wave: torch.Tensor | None = None) -> tuple[torch.Tensor, dict | None]:
        """Audio [batch, channels, samples] of `codes` by `settings.decoder`, and what the sidecar
        records of MultiBand Diffusion (None for EnCodec). `wave` is EnCodec's decoding when it
        was made already. Diffusion decodes each channel of each clip on its own, equalised to
        EnCodec's decoding of it, with noise drawn from `seed`."""
        if wave is None:
            wave = codec.decode(self.model, codes, self.plan.codec_chunk_s)
        if settings.decoder != "mbd":
            return wave, None
        from musicgen_cli.engine import mbd
        from musicgen_cli.events import Progress

        checkpoint = self.load_diffusion()
        channel_codes = [codes] if self.channels == 1 else [codes[:, ::2], codes[:, 1::2]]
        total = mbd.passes(checkpoint) * len(channel_codes) * codes.shape[0]
        self.reporter.phase("diffusion decode", f"{len(checkpoint.bands)} bands x {len(checkpoint.bands[0].schedule.steps) - 1} "
                            f"steps, {len(channel_codes)} channel(s) x {codes.shape[0]} clip(s)")
        done = 0

        def step() -> None:
            nonlocal done
            done += 1
            self.reporter.progress(Progress("diffusion", done, total, "U-Net passes"))

        draw = mbd.noise_source(torch.Generator().manual_seed(seed))
        clips = []
        for row in range(codes.shape[0]):
            channels = [mbd.decode_mono(checkpoint, self.model.audio_encoder, part[row : row + 1], wave[row : row + 1, c : c + 1], draw, step)
                        for c, part in enumerate(channel_codes)]
            clips.append(torch.cat(channels, dim=1))
        return torch.cat(clips).float().cpu(), mbd.describe(checkpoint)


    @functools.cached_property
    def weights_fingerprint(self) -> dict:
        """The loaded weights' fingerprint (store.fingerprint), computed once per loaded model."""
        from musicgen_cli.store.fingerprint import weights_fingerprint

        return weights_fingerprint(self.folder)

    def close(self) -> None:
        """Free the model's memory (RAM and VRAM) now; the object cannot generate afterwards."""
        from musicgen_cli.engine.loader import release

        model, self.model, self.loaded, self.diffusion = self.model, None, None, None
        self.lease = None  # `mgen models rm` may take it now
        release(model)

    def __enter__(self) -> "MusicGen":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- inputs ---------------------------------------------------------------------------
    def tokenize(self, prompts: list[str]):
        """Token ids cut at the text encoder's limit: T5's attention grows with the square of the
        prompt length, so an uncut 100 KB prompt would need gigabytes for nothing it can use.
        The text is cut first (no T5 token is near CHARS_PER_TOKEN long), so tokenizing costs the same."""
        device = next(self.model.text_encoder.parameters()).device
        limit = text_token_limit(self.tokenizer, self.model.config)
        texts = [p[: limit * CHARS_PER_TOKEN] for p in prompts]
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        if batch["input_ids"].shape[-1] >= limit:
            longest = max(len(self.tokenizer(t, verbose=False)["input_ids"]) for t in dict.fromkeys(texts))
            if longest > limit or texts != prompts:
                self.reporter.message(f"the prompt is longer than the {limit} tokens the text encoder reads; the rest was cut", "warning")
        return batch["input_ids"].to(device), batch["attention_mask"].to(device)

    def continuation_codes(self, settings: GenerateSettings, n: int, given=None) -> torch.LongTensor | None:
        """Codes of the audio to continue: `given` ([batch, channels, samples] at the model's
        rate) or `settings.continuation`'s file for each of the `n` clips; None without either."""
        if given is None and settings.continuation:
            given = np.repeat(audio.load_for_model(settings.continuation, self.sample_rate, self.channels)[None], n, axis=0)
        return None if given is None else codec.encode(self.model, torch.as_tensor(np.asarray(given, dtype=np.float32)))

    def trim_clips(self, wave: torch.Tensor, prompt_frames: int, settings: GenerateSettings, extra_s: float = 0.0) -> list:
        """Decoded rows cut to what was asked: the continued audio in front unless `keep_prompt`
        is off, then `duration` (+ `extra_s`) seconds of new audio."""
        begin = 0 if settings.keep_prompt else round(prompt_frames / self.frame_rate * self.sample_rate)
        keep = round((prompt_frames / self.frame_rate + settings.duration + extra_s) * self.sample_rate)
        return [w[:, begin:keep].numpy() for w in wave]

    def melody_waves(self, settings: GenerateSettings, n: int, given: list | None) -> list | None:
        if settings.melody is None and given is None:
            return None
        if not self.is_melody:
            key = self.entry.key if self.entry else self.folder.name
            raise MgenError(f"model {key!r} takes no melody", "use a melody model: --size melody or --model-key stereo-melody")
        if given is not None:
            return list(given)
        # Each window reads the melody from its own start (looping), so no more than the clip's length is used.
        return [audio.load_for_model(settings.melody, self.sample_rate, 1, settings.duration)] * n

    # -- generation -----------------------------------------------------------------------
    @staticmethod
    def sampling(settings: GenerateSettings):
        from musicgen_cli.decode.types import Sampling

        return Sampling(
            do_sample=not settings.greedy,
            temperature=settings.temperature,
            top_k=settings.top_k,
            top_p=settings.top_p,
            guidance_scale=settings.guidance,
        )

    def generate(self, prompt: str | list[str], settings: GenerateSettings = GenerateSettings(), *,
                 prompt_audio: np.ndarray | torch.Tensor | None = None,
                 melody_audio: list[np.ndarray | None] | None = None) -> GenerationResult:
        """Clips for one prompt (`num_samples` of them) or for several prompts in one batched pass.

        Clips come prompt by prompt: [p0 s0, p0 s1, ..., p1 s0, ...]. The whole batch shares one seed.
        `prompt_audio` ([batch, channels, samples]) and `melody_audio` (one [channels, samples]
        or None per clip), at the model's rate, stand in for the files of `settings`.
        """
        from musicgen_cli.engine.longform import compose

        if self.model is None:
            raise MgenError("this model was closed", "load it again (mgen.load_model)")
        settings.validate(self.max_window_s)
        for setting, wave in (("continuation", prompt_audio), *(("melody", m) for m in melody_audio or ())):
            if wave is not None:
                check_finite(wave, setting)
        if settings.melody is None and self.is_melody:
            self.reporter.message("melody model without --melody: generating from text alone")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if settings.composed and len(prompts) != 1:
            raise MgenError("a composed piece takes one prompt (or a sections file)", "generate the prompts one at a time")
        seed = settings.seed if settings.seed is not None else random.randint(0, MAX_SEED)
        result = GenerationResult(**compose(self, prompts, settings, seed, prompt_audio, melody_audio))
        if self.plan.cpu_modes:
            import psutil

            from musicgen_cli.planning.cpu_modes import learn_from_run

            learn_from_run(self.plan, result.steps_per_s, result.steps, psutil.getloadavg()[0], os.cpu_count() or 1,
                           self.cache_dir)
        return result


@dataclass(frozen=True)
class ResolvedModel:
    """A model name resolved once: its manifest entry (None for a plain folder), folder and config."""

    entry: ModelEntry | None
    folder: Path
    config: Any
    lease: Any = None  # a cached model's shared lease, taken as it resolved (store.lease.Lease)

    @property
    def max_window_s(self) -> float:
        return max_window_seconds(self.config)


def resolve_model(
    name: str | Path, *, cache_dir: str | Path | None = None, download: bool = True, reporter: Reporter | None = None
) -> ResolvedModel:
    """The folder and config of a manifest key, repo id or model folder (downloaded or built when missing)."""
    from transformers import AutoConfig

    from musicgen_cli.store.cache import is_ready
    from musicgen_cli.store.integrity import check_model_folder
    from musicgen_cli.store.lease import hold_model
    from musicgen_cli.store.models import model_folder

    entry, lease = None, None
    if Path(name).is_dir():
        folder = Path(name)
        check_model_folder(folder, f"replace the damaged files in {folder}", managed=False)
    else:
        manifest = load_manifest(cache_dir)
        entry = manifest.get(str(name))
        if entry.files:
            raise MgenError(f"{entry.key!r} is not a MusicGen model ({entry.description})",
                            f"pick a MusicGen model, and decode with it by --decoder {entry.key}")
        for _ in range(2):
            folder = model_folder(manifest, entry, download=download, reporter=reporter or NullReporter())
            # Held from here on, `mgen models rm` waits for this run; one that removed the folder
            # between finding it and holding it is seen now, and the folder is made again once.
            lease = hold_model(folder)
            if is_ready(folder):
                break
            lease.release()
        else:
            raise ModelNotFound(f"model {entry.key!r} was removed while this run started (mgen models rm)", "run the command again")
    return ResolvedModel(entry, folder, AutoConfig.from_pretrained(folder), lease)


def diffusion_checkpoint(name: str | Path, *, cache_dir: str | Path | None = None, download: bool = True,
                         reporter: Reporter | None = None) -> Path:
    """The MultiBand Diffusion checkpoint the model `name` decodes with (built, or downloaded
    when allowed), found without loading or fetching the model itself: batch and test-suite
    runs check it before their first model loads. ModelNotFound names the download."""
    from musicgen_cli.engine.mbd import checkpoint_path

    if Path(name).is_dir():
        return checkpoint_path(None, Path(name), download=download, reporter=reporter)
    manifest = load_manifest(cache_dir)
    entry = manifest.get(str(name))
    return checkpoint_path(entry, manifest.folder(entry), download=download, reporter=reporter)


def load_model(
    name: str | Path | ResolvedModel,
    *,
    cache_dir: str | Path | None = None,
    settings: GenerateSettings | None = None,
    job=None,
    plan=None,
    machine=None,
    dtype: str | None = None,
    quantize: str | None = None,
    reserve_bytes: int | None = None,
    max_vram_bytes: int | None = None,
    download: bool = True,
    reporter: Reporter | None = None,
    prompts: tuple[str, ...] = (),
) -> MusicGen:
    """Resolve `name` (manifest key, repo id, model folder, or an already `ResolvedModel`),
    plan memory, and load by the plan.

    The plan is made for `job`, else for `settings` and `prompts` (`Job.from_settings`), else
    for the default settings; a `plan` made already (a batch sizing its passes) is used as it is.
    """
    from musicgen_cli.engine.loader import load_by_plan
    from musicgen_cli.planning.hardware import probe
    from musicgen_cli.planning.job import Job
    from musicgen_cli.planning.planner import plan_memory

    report = reporter or NullReporter()
    model = name if isinstance(name, ResolvedModel) else resolve_model(name, cache_dir=cache_dir, download=download, reporter=report)
    report.phase("plan", str(name.folder if isinstance(name, ResolvedModel) else name))
    if plan is None:
        job = job or Job.from_settings(settings or GenerateSettings(), max_window_s=model.max_window_s, prompts=prompts)
        plan = plan_memory(
            model.config,
            job,
            machine or probe(cache_dir),
            dtype=dtype,
            quantize=quantize,
            reserve_bytes=reserve_bytes,
            max_vram_bytes=max_vram_bytes,
        )
    if not plan.uses_gpu and plan.cpu_kernel is None:
        from musicgen_cli.engine.cpu_probe import plan_cpu_kernel

        report.phase("plan", f"{model.folder.name}: CPU kernels")
        plan_cpu_kernel(plan, model.config, cache_dir)
    for warning in plan.warnings:
        report.message(warning, "warning")
    diffusion = settings is not None and settings.decoder == "mbd"
    if diffusion:  # a missing checkpoint is found (or fetched) before the model loads
        from musicgen_cli.engine.mbd import checkpoint_path

        checkpoint_path(model.entry, model.folder, download=download, reporter=report)
    loaded = load_by_plan(model.folder, plan, reporter=report)
    mg = MusicGen(loaded, model.entry, model.folder, report)
    mg.cache_dir = cache_dir
    mg.lease = model.lease  # taken when the name resolved: `mgen models rm` refuses the model while it is held
    if diffusion:
        mg.load_diffusion(download=download)
    return mg
