"""The generation engine: load a model once by plan, then generate clips many times.

    from musicgen_cli import load_model, GenerateSettings
    mg = load_model("small")
    result = mg.generate("jazz trio", GenerateSettings(duration=8, seed=1))

Clips longer than the model's window are generated in windows: each new window is prompted
with the last `context_s` seconds of codes generated so far, as audiocraft does, and the
codes are decoded once at the end so the audio has no seams.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from musicgen_cli.arch import is_melody
from musicgen_cli.engine import audio, codec
from musicgen_cli.errors import Interrupted, MgenError
from musicgen_cli.events import NullReporter, Progress, Reporter
from musicgen_cli.store.manifest import ModelEntry, load_manifest

MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class GenerateSettings:
    duration: float = 10.0
    num_samples: int = 1
    seed: int | None = None
    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 0.0
    guidance: float = 3.0
    greedy: bool = False
    engine: str = "fast"  # "fast" (our static-cache loop) or "reference" (transformers' generate)
    window_s: float = 30.0
    context_s: float = 10.0
    continuation: Path | None = None
    melody: Path | None = None

    def validate(self, max_window_s: float) -> None:
        if not 0 < self.duration <= 3600:
            raise MgenError(f"duration {self.duration} s is out of range", "use --duration between 0 and 3600 seconds")
        if self.num_samples < 1:
            raise MgenError("--num-samples must be at least 1", "use -n 1 or more")
        if not 0 < self.window_s <= max_window_s:
            raise MgenError(f"window of {self.window_s} s is out of range", f"use a window up to {max_window_s:.0f} s")
        if not 0 <= self.context_s < self.window_s:
            raise MgenError("the context must be shorter than the window", "lower --context or raise --window")
        if self.temperature <= 0 and not self.greedy:
            raise MgenError("temperature must be > 0", "use --temperature 1.0, or --greedy")
        if self.engine not in {"fast", "reference"}:
            raise MgenError(f"unknown engine {self.engine!r}", "use --engine fast or --engine reference")


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

    @property
    def steps_per_s(self) -> float:
        gen = self.timings.get("generate", 0.0)
        return self.steps / gen if gen else 0.0

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio per second of wall time spent generating and decoding."""
        spent = self.timings.get("generate", 0.0) + self.timings.get("decode", 0.0)
        return self.settings.duration / spent if spent else 0.0


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
        self.sample_rate = int(self.model.config.audio_encoder.sampling_rate)
        self.channels = codec.channels_of(self.model)
        self.frame_rate = codec.frame_rate(self.model)
        self.is_melody = is_melody(self.model.config)
        # Positions are learned/sinusoidal up to this many decoder steps: the longest window.
        self.max_window_s = (self.model.config.decoder.max_position_embeddings - 1) / self.frame_rate

    # -- inputs ---------------------------------------------------------------------------
    def _tokenize(self, prompts: list[str]):
        device = next(self.model.text_encoder.parameters()).device
        batch = self.tokenizer(prompts, padding=True, return_tensors="pt")
        return batch["input_ids"].to(device), batch["attention_mask"].to(device)

    def _continuation_codes(self, path: Path, n: int) -> torch.LongTensor:
        wave = audio.load_for_model(path, self.sample_rate, self.channels)
        codes = codec.encode(self.model, torch.from_numpy(wave)[None])
        return codes.expand(n, -1, -1).clone()

    def _melody_features(self, path: Path, n: int) -> torch.Tensor:
        from musicgen_cli.engine.melody import chroma

        if not self.is_melody:
            key = self.entry.key if self.entry else self.folder.name
            raise MgenError(f"model {key!r} takes no melody", "use a melody model: --size melody or --model-key stereo-melody")
        wave = audio.load_for_model(path, self.sample_rate, 1)
        return chroma(wave, self.sample_rate).expand(n, -1, -1).clone()

    # -- generation -----------------------------------------------------------------------
    def generate(self, prompt: str | list[str], settings: GenerateSettings = GenerateSettings()) -> GenerationResult:
        """Clips for one prompt (`num_samples` of them) or for several prompts in one batched pass.

        Clips come prompt by prompt: [p0 s0, p0 s1, ..., p1 s0, ...]. The whole batch shares one seed.
        """
        from musicgen_cli.decode.types import Sampling
        from musicgen_cli.decode.windows import generate_codes
        from musicgen_cli.planning.monitor import snapshot

        settings.validate(self.max_window_s)
        if settings.melody is None and self.is_melody:
            self.reporter.message("melody model without --melody: generating from text alone")
        report = self.reporter
        timings: dict[str, float] = {}
        seed = settings.seed if settings.seed is not None else random.randint(0, MAX_SEED)
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        batch = [p for p in prompts for _ in range(settings.num_samples)]
        n = len(batch)
        sampling = Sampling(
            do_sample=not settings.greedy,
            temperature=settings.temperature,
            top_k=settings.top_k,
            top_p=settings.top_p,
            guidance_scale=settings.guidance,
        )

        t0 = time.perf_counter()
        report.phase("encode text", prompts[0] if len(prompts) == 1 else f"{len(prompts)} prompts")
        input_ids, attention_mask = self._tokenize(batch)
        melody = self._melody_features(settings.melody, n) if settings.melody else None
        codes = self._continuation_codes(settings.continuation, n) if settings.continuation else None
        timings["encode"] = time.perf_counter() - t0

        total = max(1, round(settings.duration * self.frame_rate))
        prompt_frames = 0 if codes is None else codes.shape[-1]
        steps = frames_done = 0
        last_readout = 0.0
        readouts: dict = {}
        peaks = {"rss_bytes": 0.0, "vram_bytes": 0.0}

        def on_step(step: int, step_total: int) -> None:
            nonlocal steps, frames_done, last_readout, readouts
            steps = step
            now = time.perf_counter()
            if now - last_readout > 0.25 or step == step_total:
                snap = snapshot()
                readouts = asdict(snap)
                peaks["rss_bytes"] = max(peaks["rss_bytes"], snap.rss_bytes)
                peaks["vram_bytes"] = max(peaks["vram_bytes"], sum(g.peak_allocated_bytes for g in snap.gpus))
                last_readout = now
            # Steps include the codebook delay of each window; show progress in audio frames.
            frames_done = round(total * step / step_total)
            report.progress(
                Progress("generate", frames_done, total, "frames", {**readouts, "steps": steps, "frame_rate": self.frame_rate})
            )

        report.phase("generate", f"{settings.duration:g} s, {n} clip(s), seed {seed}")
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        try:
            codes = generate_codes(
                self.model,
                input_ids=input_ids,
                attention_mask=attention_mask,
                num_frames=total,
                sampling=sampling,
                prompt_codes=codes,
                melody_features=melody,
                engine=settings.engine,
                on_step=on_step,
                window_frames=int(settings.window_s * self.frame_rate),
                context_frames=int(settings.context_s * self.frame_rate),
            ).cpu()
        except KeyboardInterrupt:
            got = frames_done / self.frame_rate
            raise Interrupted(
                f"stopped after about {got:.1f} s of {settings.duration:g} s of audio; nothing was written",
                "run again, or ask for a shorter --duration",
            ) from None
        timings["generate"] = time.perf_counter() - t0

        report.phase("decode audio", f"{codes.shape[-1]} frames")
        t0 = time.perf_counter()
        try:
            wave = codec.decode(self.model, codes, self.plan.codec_chunk_s)
        except KeyboardInterrupt:
            raise Interrupted("stopped while decoding audio; nothing was written", "run again") from None
        timings["decode"] = time.perf_counter() - t0
        # Continuations keep the given audio in front; plain clips are trimmed to the asked length.
        keep = round((prompt_frames / self.frame_rate + settings.duration) * self.sample_rate)
        clips = [w[:, :keep].numpy() for w in wave]
        snap = snapshot()
        peaks["rss_bytes"] = max(peaks["rss_bytes"], snap.peak_rss_bytes)
        return GenerationResult(
            clips=clips,
            sample_rate=self.sample_rate,
            prompts=batch,
            seed=seed,
            settings=settings,
            timings=timings,
            steps=steps,
            peaks=peaks,
        )


def load_model(
    name: str | Path,
    *,
    cache_dir: str | Path | None = None,
    job=None,
    machine=None,
    dtype: str | None = None,
    quantize: str | None = None,
    reserve_bytes: int | None = None,
    max_vram_bytes: int | None = None,
    download: bool = True,
    reporter: Reporter | None = None,
) -> MusicGen:
    """Resolve `name` (manifest key, repo id or model folder), plan memory, and load by the plan."""
    from transformers import AutoConfig

    from musicgen_cli.engine.loader import load_model as load_by_plan
    from musicgen_cli.planning.hardware import probe
    from musicgen_cli.planning.planner import Job, plan_memory
    from musicgen_cli.store.models import model_folder

    report = reporter or NullReporter()
    report.phase("plan", str(name))
    entry = None
    if Path(name).is_dir():
        folder = Path(name)
    else:
        manifest = load_manifest(cache_dir)
        entry = manifest.get(str(name))
        folder = model_folder(manifest, entry, download=download, reporter=report)
    config = AutoConfig.from_pretrained(folder)
    plan = plan_memory(
        config,
        job or Job(duration_s=10.0),
        machine or probe(cache_dir),
        dtype=dtype,
        quantize=quantize,
        reserve_bytes=reserve_bytes,
        max_vram_bytes=max_vram_bytes,
    )
    if not plan.uses_gpu:
        from musicgen_cli.engine.cpu_probe import plan_cpu_kernel

        report.phase("plan", f"{name}: CPU kernels")
        plan_cpu_kernel(plan, config, cache_dir)
    for warning in plan.warnings:
        report.message(warning, "warning")
    loaded = load_by_plan(folder, plan, reporter=report)
    return MusicGen(loaded, entry, folder, report)
