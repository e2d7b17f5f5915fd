"""audiocraft's `MusicGen` and `audio_write`, on mgen: change one import and a script runs.

    from musicgen_cli.compat.audiocraft import MusicGen, audio_write
    # was: from audiocraft.models import MusicGen; from audiocraft.data.audio import audio_write

Signatures, defaults and semantics follow audiocraft (models/musicgen.py, models/genmodel.py,
data/audio.py): a fresh model generates 15 s, `set_generation_params()` resets to 30 s,
continuations count the prompt inside `duration`, clips past `max_duration` advance by
`extend_stride`, results are float tensors [B, C, T] (tokens [B, K, frames]). Underneath,
mgen's planner places the model so it fits the machine, and `audio_write` is mgen's own
writer (formats, levels per ITU-R BS.1770). Randomness comes from torch's global generator,
so `torch.manual_seed` makes runs repeat as it does with audiocraft.
"""

from __future__ import annotations

import math
import sys
import typing as tp
import warnings
from pathlib import Path

import numpy as np
import torch

from musicgen_cli.arch import WINDOW_SECONDS
from musicgen_cli.compat.audiocraft_mbd import MultiBandDiffusion
from musicgen_cli.engine import audio
from musicgen_cli.engine.musicgen import MAX_SEED, GenerateSettings, load_model
from musicgen_cli.errors import MgenError, ValidationError
from musicgen_cli.events import NullReporter, Progress
from musicgen_cli.jobs.request import Request
from musicgen_cli.jobs.run import render

__all__ = ["MultiBandDiffusion", "MusicGen", "audio_write"]

# audiocraft's backward-compatible short names (models/musicgen.py _HF_MODEL_CHECKPOINTS_MAP)
_HF_MODEL_CHECKPOINTS_MAP = {
    "small": "facebook/musicgen-small",
    "medium": "facebook/musicgen-medium",
    "large": "facebook/musicgen-large",
    "melody": "facebook/musicgen-melody",
    "style": "facebook/musicgen-style",
}
_DEBUG_MODEL = "tiny-random"  # audiocraft's 'debug' model is its unit-test model; ours is this
MelodyList = tp.List[tp.Optional[torch.Tensor]]
MelodyType = tp.Union[torch.Tensor, MelodyList]
Output = tp.Union[torch.Tensor, tp.Tuple[torch.Tensor, torch.Tensor]]


# Argument errors come as the exception types audiocraft raises (its asserts, ValueError,
# RuntimeError; TypeError where it documents a type but never checks it), in its words, and
# are MgenErrors too, so mgen's own callers word them like any other.
class AudiocraftAssertion(MgenError, AssertionError):
    """What audiocraft checks with `assert`."""


class AudiocraftValueError(MgenError, ValueError):
    """A value audiocraft documents and mgen refuses before any work."""


class AudiocraftTypeError(MgenError, TypeError):
    """An argument of a type audiocraft does not document (a string where a list belongs)."""


class AudiocraftRuntimeError(MgenError, RuntimeError):
    """audiocraft's RuntimeError (a melody for a model without melody conditioning)."""


# GenerateSettings' names -> the parameter an audiocraft caller passed.
_PARAMETERS = {"guidance": "cfg_coef", "greedy": "use_sampling", "window_s": "max_duration", "context_s": "extend_stride"}


def _descriptions(descriptions, *, none_ok: bool = False) -> list:
    """A list of text descriptions (None allowed where audiocraft allows it), checked."""
    if isinstance(descriptions, (str, bytes)):
        raise AudiocraftTypeError(f"descriptions must be a list of strings, not a {type(descriptions).__name__}",
                                  f"wrap it in a list: [{descriptions!r}]")
    if not isinstance(descriptions, (list, tuple)):
        raise AudiocraftTypeError(f"descriptions must be a list of strings, not {type(descriptions).__name__}", "pass a list")
    if not descriptions:
        raise AudiocraftValueError("descriptions is empty", "give at least one description")
    for index, text in enumerate(descriptions):
        if not (isinstance(text, str) or (none_ok and text is None)):
            raise AudiocraftTypeError(f"descriptions[{index}] must be a string, not {type(text).__name__}", "pass text")
    return list(descriptions)


def _rate(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise AudiocraftValueError(f"{name} must be a positive integer (Hz), not {value!r}", "pass the audio's sample rate, e.g. 32000")
    return int(value)


def _waveform(wav, name: str) -> torch.Tensor:
    if not isinstance(wav, torch.Tensor):
        raise AudiocraftTypeError(f"{name} must be a torch.Tensor, not {type(wav).__name__}", "pass torch.from_numpy(array)")
    if wav.shape[-1] == 0:
        raise AudiocraftValueError(f"{name} has no samples", "pass at least a fraction of a second of audio")
    if not bool(torch.isfinite(wav).all()):
        raise AudiocraftValueError(f"{name} holds samples that are not finite numbers (NaN or infinity)", "pass ordinary samples")
    return wav


class _CallbackReporter(NullReporter):
    """Turns the engine's frame progress into audiocraft's `callback(generated, to_generate)`."""

    def __init__(self, callback: tp.Callable[[int, int], None]):
        self.callback = callback

    def progress(self, update: Progress) -> None:
        if update.task == "generate":
            self.callback(int(update.done), int(update.total or 0))


def _print_progress(generated_tokens: int, tokens_to_generate: int) -> None:
    # audiocraft's default progress display, asked for with progress=True
    print(f"{generated_tokens: 6d} / {tokens_to_generate: 6d}", end="\r", file=sys.stdout)


def _numpy(wav: torch.Tensor) -> np.ndarray:
    return wav.detach().to("cpu", torch.float32).numpy()


class MusicGen:
    """audiocraft's MusicGen generation API over an mgen engine model."""

    def __init__(self, name: str, model, max_duration: float | None = None):
        self.name = name
        self.engine = model  # musicgen_cli.engine.musicgen.MusicGen
        self.max_duration: float = max_duration or min(WINDOW_SECONDS, model.max_window_s)
        self.duration = self.max_duration
        self.extend_stride: float | None = None
        self.generation_params: dict = {}
        self._progress_callback: tp.Callable[[int, int], None] | None = None
        self.set_generation_params(duration=15)  # audiocraft's default after loading

    # -- loading ----------------------------------------------------------------------------
    @staticmethod
    def get_pretrained(name: str = "facebook/musicgen-melody", device=None) -> MusicGen:
        """A hub id, an audiocraft short name, any mgen model key or a model folder; downloaded
        like `mgen download` when missing, and loaded as mgen's memory plan says."""
        from musicgen_cli.planning.hardware import probe, simulate

        if name == "debug":
            name = _DEBUG_MODEL
        if name in _HF_MODEL_CHECKPOINTS_MAP:
            warnings.warn(
                "MusicGen pretrained model relying on deprecated checkpoint mapping. "
                f"Please use full pre-trained id instead: facebook/musicgen-{name}",
                stacklevel=2,
            )
            name = _HF_MODEL_CHECKPOINTS_MAP[name]
        if "musicgen-style" in str(name):
            raise MgenError("MusicGen-Style is not supported by mgen yet (its style conditioner has no transformers model)",
                            "use facebook/musicgen-melody for audio-guided generation")
        device = str(device) if device is not None else None
        if device not in (None, "cpu") and not device.startswith("cuda"):
            raise MgenError(f"unknown device {device!r}", "use device='cuda', 'cpu' or None")
        machine = probe()
        if device and device.startswith("cuda") and not machine.gpus:
            raise MgenError(f"device={device!r} but torch sees no CUDA GPU", "install a CUDA build of torch, or use device='cpu'")
        machine = simulate(machine, no_gpu=device == "cpu")
        return MusicGen(str(name), load_model(name, machine=machine))

    # -- settings ---------------------------------------------------------------------------
    def set_generation_params(self, use_sampling: bool = True, top_k: int = 250,
                              top_p: float = 0.0, temperature: float = 1.0,
                              duration: float = 30.0, cfg_coef: float = 3.0,
                              cfg_coef_beta: tp.Optional[float] = None,
                              two_step_cfg: bool = False, extend_stride: float = 18) -> None:
        """audiocraft's parameters and defaults; those mgen cannot honour are refused, not ignored."""
        for name, value in (("duration", duration), ("extend_stride", extend_stride)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise AudiocraftValueError(f"{name} must be a positive number of seconds, not {value!r}",
                                           "e.g. duration=30, extend_stride=18")
        if extend_stride >= self.max_duration:
            raise AudiocraftAssertion("Cannot stride by more than max generation duration.",
                                      f"use an extend_stride below max_duration ({self.max_duration:g} s)")
        try:
            GenerateSettings(duration=duration, temperature=temperature, top_k=top_k, top_p=top_p, guidance=cfg_coef,
                             greedy=not use_sampling).validate()
        except ValidationError as exc:
            raise AudiocraftValueError(f"{_PARAMETERS.get(exc.setting, exc.setting)} {exc.problem}", exc.fix) from None
        if two_step_cfg:
            raise MgenError("two_step_cfg=True is not supported by mgen (it batches both CFG halves in one pass)",
                            "leave two_step_cfg=False, audiocraft's default")
        if cfg_coef_beta is not None:
            raise MgenError("cfg_coef_beta (double classifier-free guidance) is not supported by mgen",
                            "leave cfg_coef_beta=None and use cfg_coef")
        self.extend_stride = extend_stride
        self.duration = duration
        self.generation_params = {
            "use_sampling": use_sampling,
            "temp": temperature,
            "top_k": top_k,
            "top_p": top_p,
            "cfg_coef": cfg_coef,
            "two_step_cfg": two_step_cfg,
            "cfg_coef_beta": cfg_coef_beta,
        }

    def set_custom_progress_callback(self, progress_callback: tp.Optional[tp.Callable[[int, int], None]] = None) -> None:
        """Override the default progress callback."""
        self._progress_callback = progress_callback

    def set_style_conditioner_params(self, *args, **kwargs) -> None:
        raise MgenError("MusicGen-Style is not supported by mgen yet", "use generate_with_chroma on a melody model")

    # -- properties -------------------------------------------------------------------------
    @property
    def frame_rate(self) -> float:
        return self.engine.frame_rate

    @property
    def sample_rate(self) -> int:
        return self.engine.sample_rate

    @property
    def audio_channels(self) -> int:
        return self.engine.channels

    @property
    def device(self) -> torch.device:
        return next(self.engine.model.decoder.parameters()).device

    # -- generation -------------------------------------------------------------------------
    def generate_unconditional(self, num_samples: int, progress: bool = False, return_tokens: bool = False) -> Output:
        """Samples without a text condition (mgen conditions them on the empty text)."""
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise AudiocraftValueError(f"num_samples must be a positive integer, not {num_samples!r}", "e.g. num_samples=2")
        return self._generate([None] * num_samples, progress, return_tokens)

    def generate(self, descriptions: tp.List[str], progress: bool = False, return_tokens: bool = False) -> Output:
        """Samples conditioned on text."""
        return self._generate(_descriptions(descriptions), progress, return_tokens)

    def generate_with_chroma(self, descriptions: tp.List[str], melody_wavs: MelodyType, melody_sample_rate: int,
                             progress: bool = False, return_tokens: bool = False) -> Output:
        """Samples conditioned on text and melody: [B, C, T], [C, T] (one description) or a list
        of [C, T] tensors and Nones, at `melody_sample_rate`."""
        descriptions = _descriptions(descriptions)
        melody_sample_rate = _rate(melody_sample_rate, "melody_sample_rate")
        if not self.engine.is_melody:
            raise AudiocraftRuntimeError("This model doesn't support melody conditioning. Use the `melody` model.",
                                         "load a melody model, e.g. facebook/musicgen-melody")
        if isinstance(melody_wavs, torch.Tensor):
            if melody_wavs.dim() == 2:
                melody_wavs = melody_wavs[None]
            if melody_wavs.dim() != 3:
                raise ValueError("Melody wavs should have a shape [B, C, T].")
            melody_wavs = list(melody_wavs)
        else:
            for melody in melody_wavs:
                if melody is not None and _waveform(melody, "melody").dim() != 2:
                    raise AudiocraftAssertion("One melody in the list has the wrong number of dims.", "pass [C, T] tensors")
        if len(melody_wavs) != len(descriptions):
            raise AudiocraftAssertion("number of melody wavs must match number of descriptions! "
                                      f"got melody len={len(melody_wavs)}, and descriptions len={len(descriptions)}",
                                      "give one melody (or None) per description")
        for wav in melody_wavs:
            if wav is not None:
                _waveform(wav, "melody")
        melodies = [None if wav is None else self._convert(wav, melody_sample_rate) for wav in melody_wavs]
        return self._generate(list(descriptions), progress, return_tokens, melodies=melodies)

    def generate_continuation(self, prompt: torch.Tensor, prompt_sample_rate: int,
                              descriptions: tp.Optional[tp.List[tp.Optional[str]]] = None,
                              progress: bool = False, return_tokens: bool = False) -> Output:
        """Continue `prompt` ([B, C, T] or [C, T]); the result holds the prompt and the
        continuation, `duration` seconds in all (audiocraft's rule)."""
        prompt = _waveform(prompt, "prompt")
        prompt_sample_rate = _rate(prompt_sample_rate, "prompt_sample_rate")
        if prompt.dim() == 2:
            prompt = prompt[None]
        if prompt.dim() != 3:
            raise ValueError("prompt should have 3 dimensions: [B, C, T] (C = 1).")
        waves = np.stack([self._convert(wav, prompt_sample_rate) for wav in prompt])
        if descriptions is None:
            descriptions = [None] * len(waves)
        descriptions = _descriptions(descriptions, none_ok=True)
        if len(descriptions) != len(waves):
            raise AudiocraftAssertion("Prompt and nb. descriptions doesn't match", "give one description (or None) per prompt")
        return self._generate(list(descriptions), progress, return_tokens, prompt=waves)

    def _convert(self, wav: torch.Tensor, rate: int) -> np.ndarray:
        """audiocraft's convert_audio: to the model's sample rate and channel count."""
        return audio.match_channels(audio.resample(_numpy(wav), int(rate), self.sample_rate), self.audio_channels)

    def _generate(self, descriptions: list, progress: bool, return_tokens: bool,
                  prompt: np.ndarray | None = None, melodies: list | None = None) -> Output:
        params = self.generation_params
        total = int(self.duration * self.frame_rate)
        prompt_frames = 0 if prompt is None else math.ceil(prompt.shape[-1] * self.frame_rate / self.sample_rate)
        if prompt_frames and prompt_frames >= total:
            raise AudiocraftAssertion("Prompt is longer than audio to generate",
                            "raise the duration with set_generation_params(duration=...) or trim the prompt")
        settings = GenerateSettings(
            duration=(total - prompt_frames) / self.frame_rate,
            seed=int(torch.randint(0, MAX_SEED, (1,)).item()),  # torch.manual_seed governs, as in audiocraft
            temperature=params["temp"],
            top_k=params["top_k"],
            top_p=params["top_p"],
            guidance=params["cfg_coef"],
            greedy=not params["use_sampling"],
            window_s=self.max_duration,
            context_s=self.max_duration - self.extend_stride,
        )
        callback = self._progress_callback or _print_progress
        reporter = _CallbackReporter(callback) if progress else NullReporter()
        texts = tuple("" if d is None else d for d in descriptions)
        request = Request(prompts=texts, settings=settings, prompt_audio=prompt, melody_audio=melodies)
        rendered = render(request, self.engine, reporter)
        wav = torch.from_numpy(np.stack([r.clip for r in rendered]))
        return (wav, torch.from_numpy(np.stack([r.codes for r in rendered]))) if return_tokens else wav

    def generate_audio(self, gen_tokens: torch.Tensor) -> torch.Tensor:
        """Audio [B, C, T] from tokens [B, K, frames]."""
        from musicgen_cli.engine import codec

        if gen_tokens.dim() != 3:
            raise ValueError("tokens should be [B, K, frames]")
        return codec.decode(self.engine.model, gen_tokens, self.engine.plan.codec_chunk_s)


def audio_write(stem_name: tp.Union[str, Path], wav: torch.Tensor, sample_rate: int,
                format: str = "wav", mp3_rate: int = 320, ogg_rate: tp.Optional[int] = None,
                normalize: bool = True, strategy: str = "peak", peak_clip_headroom_db: float = 1,
                rms_headroom_db: float = 18, loudness_headroom_db: float = 14,
                loudness_compressor: bool = False,
                log_clipping: bool = True, make_parent_dir: bool = True,
                add_suffix: bool = True) -> Path:
    """audiocraft's audio_write, written by mgen's own writer (atomically); returns the path.

    Formats as audiocraft writes them: wav and flac 16-bit, ogg Vorbis, mp3 at `mp3_rate` kb/s.
    """
    if not isinstance(wav, torch.Tensor):
        raise AudiocraftTypeError(f"wav must be a torch.Tensor, not {type(wav).__name__}", "pass torch.from_numpy(array)")
    if not wav.dtype.is_floating_point:
        raise AudiocraftAssertion("wav is not floating point", "pass a float tensor (wav.float())")
    if wav.dim() == 1:
        wav = wav[None]
    elif wav.dim() > 2:
        raise AudiocraftValueError("Input wav should be at most 2 dimension.", "pass [C, T] (one clip of a batch: wav[0])")
    if wav.shape[-1] == 0:
        raise AudiocraftValueError("wav has no samples", "pass at least one sample")
    if not bool(torch.isfinite(wav).all()):
        raise AudiocraftAssertion("wav has non-finite values", "pass ordinary samples")
    sample_rate = _rate(sample_rate, "sample_rate")
    audio.format_spec(format)
    path = Path(str(stem_name) + (f".{format}" if add_suffix else ""))
    if not make_parent_dir and not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent} does not exist")
    options = audio.AudioOptions(
        format=format, mp3_bitrate=mp3_rate, ogg_bitrate=ogg_rate, normalize=strategy or "none",
        peak_headroom_db=peak_clip_headroom_db, rms_headroom_db=rms_headroom_db,
        loudness_headroom_db=loudness_headroom_db, loudness_compressor=loudness_compressor,
    ).validate()
    record = audio.save(path, _numpy(wav), sample_rate, options, normalize=normalize)
    if log_clipping and record["clipped_samples"]:
        warnings.warn(f"CLIPPING {stem_name} happening: {record['clipped_samples']} samples clipped at full scale", stacklevel=2)
    return path
