"""MultiBand Diffusion: EnCodec's codes to audio by four band-wise diffusion models.

Each band's U-Net (arch/diffusion.py) denoises Gaussian noise over a subsampled DDPM
chain (20 of the 1000 training steps), conditioned on EnCodec's latent (the sum of the codes'
codebook vectors); some bands then leave the normalised "diffusion space" of their sample
processor (per mel band: rescale to the trained spread, add the trained mean). The bands add
up to the clip, whose spectrum is finally equalised to EnCodec's own decoding in 32 mel bands.

Checkpoints are audiocraft's `mbd_musicgen_32khz.th` layout, read with weights_only=True:

    {"sample_rate": 32000, "n_bands": 4,
     0: {"cfg": {...}, "model_state": {...}, "processor_state": {...}}, 1: ..., ...}

where each cfg holds `channels`, `schedule`, `diffusion_unet` and `processor`. The band
filters are julius' (the library audiocraft uses), so a band split here is the same filter bank.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from musicgen_cli import config
from musicgen_cli.arch.diffusion import (
    DEFAULT_STEPS,
    EQ_BANDS,
    TINY_UNET,
    DiffusionUNet,
    band_configs,
    bottleneck_sizes,
    from_checkpoint_keys,
    to_checkpoint_keys,
)
from musicgen_cli.errors import MgenError, ModelNotFound
from musicgen_cli.events import NullReporter, Reporter
from musicgen_cli.store.cache import atomic_path, file_digest
from musicgen_cli.store.safeload import load_torch_file, plain_config

CHECKPOINT_NAME = "mbd_musicgen_32khz.th"


@dataclass(frozen=True)
class Schedule:
    """A power noise schedule: betas spaced evenly in beta**(1/beta_exp) from beta_t0 to beta_t1."""

    beta_t0: float = 1e-5
    beta_t1: float = 2.9e-2
    beta_exp: float = 7.5
    num_steps: int = 1000
    clip: float = 5.0
    rescale: float = 1.0
    noise_scale: float = 1.0
    steps: tuple[int, ...] = DEFAULT_STEPS  # the chain's states, from the noisiest to 0

    @classmethod
    def from_config(cls, cfg: dict, steps: tuple[int, ...] = DEFAULT_STEPS) -> Schedule:
        if cfg.get("repartition", "power") != "power" or cfg.get("n_bands") is not None:
            raise MgenError("this diffusion checkpoint uses a noise schedule mgen does not implement",
                            "use audiocraft's mbd_musicgen_32khz.th (power schedule, one band per model)")
        names = ("beta_t0", "beta_t1", "beta_exp", "num_steps", "clip", "rescale", "noise_scale")
        return cls(**{n: type(getattr(cls, n))(cfg[n]) for n in names if cfg.get(n) is not None}, steps=steps)

    def betas(self) -> torch.Tensor:
        ends = torch.tensor([self.beta_t0, self.beta_t1]) ** (1 / self.beta_exp)
        return torch.linspace(float(ends[0]), float(ends[1]), self.num_steps) ** self.beta_exp

    def alpha_bars(self) -> torch.Tensor:
        """The fraction of signal variance left after each step: prod(1 - beta) up to it."""
        return torch.cumprod(1 - self.betas(), dim=0)

    def record(self) -> dict:
        return {**asdict(self), "steps": list(self.steps)}


def sample(unet: nn.Module, schedule: Schedule, noise: torch.Tensor, condition: torch.Tensor,
           draw: Callable[[torch.Tensor], torch.Tensor], on_step: Callable[[], None] | None = None) -> torch.Tensor:
    """The reverse chain over `schedule.steps`: ancestral DDPM updates between the kept states.

    Between kept states s > s' the update uses alpha = ab[s] / ab[s'] (ab: alpha_bars) and adds
    noise of variance (1 - ab[s']) / (1 - ab') * (1 - alpha), where ab' is the previous state's
    (ab of the last training step at the start); the last update adds none. Values are clipped
    to +-clip after every update, as in training.
    """
    ab = schedule.alpha_bars()
    steps = list(schedule.steps)
    current_ab = ab[schedule.num_steps - 1]
    x = noise * schedule.noise_scale
    for index, step in enumerate(steps[:-1]):
        with torch.no_grad():
            estimate = unet(x, step, condition=condition) * schedule.noise_scale
        following = steps[index + 1]
        alpha = ab[step] / ab[following]
        x = (x - (1 - alpha) / (1 - current_ab).sqrt() * estimate) / alpha.sqrt()
        if index == len(steps) - 2:
            next_ab = torch.tensor(1.0)
        else:
            next_ab = ab[following]
            variance = (1 - next_ab) / (1 - current_ab) * (1 - alpha)
            x = x + variance.sqrt() * draw(x) * schedule.noise_scale
        if schedule.clip:
            x = x.clamp(-schedule.clip, schedule.clip)
        if step == 0:
            x = x * schedule.rescale
        current_ab = next_ab
        if on_step is not None:
            on_step()
    return x


@functools.lru_cache(maxsize=8)
def _filter_bank(sample_rate: int, n_bands: int):
    import julius

    return julius.SplitBands(sample_rate, n_bands=n_bands)


def split_bands(x: torch.Tensor, sample_rate: int, n_bands: int) -> torch.Tensor:
    """[n_bands, *x.shape]: x split at mel-spaced cutoffs; the bands add up to x."""
    return _filter_bank(sample_rate, n_bands).to(x.device)(x)


class BandProcessor(nn.Module):
    """The per-band normaliser a diffusion model was trained behind (audiocraft's
    MultiBandProcessor state): its learnt statistics map diffusion space back to audio."""

    def __init__(self, sample_rate: int, n_bands: int = 8, power_std: float | list[float] = 1.0, **ignored):
        super().__init__()
        import julius

        self.power_std = torch.tensor(power_std) if isinstance(power_std, list) else power_std
        self.split_bands = julius.SplitBands(sample_rate, n_bands=n_bands)
        for name in ("sum_x", "sum_x2", "sum_target_x2"):
            self.register_buffer(name, torch.zeros(n_bands))
        self.register_buffer("counts", torch.zeros(1))

    def return_sample(self, x: torch.Tensor) -> torch.Tensor:
        """Per band: scale by (std / target_std) ** power_std, add the mean, then sum the bands.

        target_std is the mean power of Gaussian noise in the band as recorded (not its root).
        """
        mean = self.sum_x / self.counts
        std = (self.sum_x2 / self.counts - mean**2).clamp(min=0).sqrt()
        target_std = self.sum_target_x2 / self.counts
        scale = (std / target_std) ** self.power_std
        bands = self.split_bands(x)
        return (bands * scale.view(-1, 1, 1, 1) + mean.view(-1, 1, 1, 1)).sum(dim=0)


def equalise(wav: torch.Tensor, ref: torch.Tensor, sample_rate: int, n_bands: int = EQ_BANDS, strictness: float = 1.0) -> torch.Tensor:
    """wav with each mel band scaled so its standard deviation (over the whole tensor) matches ref's."""
    bands, ref_bands = split_bands(wav, sample_rate, n_bands), split_bands(ref, sample_rate, n_bands)
    out = torch.zeros_like(ref)
    for band, target in zip(bands, ref_bands):
        out += band * (target.std() / band.std()) ** strictness
    return out


@dataclass
class Band:
    unet: DiffusionUNet
    schedule: Schedule
    processor: BandProcessor | None  # None: the model works on audio directly
    cfg: dict = field(default_factory=dict)


@dataclass
class Checkpoint:
    sample_rate: int
    bands: list[Band]
    fingerprint: str  # sha256 of the file's bytes

    @property
    def channels(self) -> int:
        return int(self.bands[0].cfg.get("channels", 1))

    def to(self, device) -> Checkpoint:
        for band in self.bands:
            band.unet.to(device)
            if band.processor is not None:
                band.processor.to(device)
        return self


def _band(entry, sample_rate: int, index: int, path: Path) -> Band:
    if not isinstance(entry, dict) or not {"cfg", "model_state"} <= set(entry):
        raise MgenError(f"{path.name}: band {index} has no cfg/model_state", "give audiocraft's mbd_musicgen_32khz.th")
    cfg = plain_config(entry["cfg"])
    unet_cfg = dict(cfg.get("diffusion_unet") or {})
    if unet_cfg.get("cross_attention"):
        raise MgenError(f"{path.name}: band {index} uses cross-attention conditioning, which mgen does not implement",
                        "use audiocraft's mbd_musicgen_32khz.th")
    schedule_cfg = cfg.get("schedule") or {}
    state = from_checkpoint_keys(entry["model_state"])
    # Built without memory and given the file's tensors themselves: torch.load maps the file, so
    # the weights stay page cache the kernel can drop (on the CPU) or pass through on their way
    # to a GPU, instead of a 2.6 GB copy on the heap beside the map.
    with torch.device("meta"):
        unet = DiffusionUNet(int(cfg.get("channels", 1)), int(schedule_cfg.get("num_steps", 1000)), **unet_cfg, **bottleneck_sizes(state))
    try:
        unet.load_state_dict(state, assign=True)
    except RuntimeError as exc:
        raise MgenError(f"{path.name}: band {index}'s weights do not fit its config ({str(exc).splitlines()[0][:200]})",
                        "download it again: mgen download mbd") from None
    processor = None
    proc_cfg = cfg.get("processor") or {}
    if proc_cfg.get("use"):
        if proc_cfg.get("name", "multi_band_processor") != "multi_band_processor":
            raise MgenError(f"{path.name}: unknown sample processor {proc_cfg.get('name')!r}", "use audiocraft's mbd_musicgen_32khz.th")
        processor = BandProcessor(sample_rate, **{k: v for k, v in proc_cfg.items() if k not in ("use", "name")})
        missing, unexpected = processor.load_state_dict(entry.get("processor_state") or {}, strict=False)
        # julius rebuilds its filter bank from the config; a file without it loads all the same
        if unexpected or [k for k in missing if not k.endswith(".filters")]:
            raise MgenError(f"{path.name}: band {index}'s processor statistics are missing or foreign "
                            f"({', '.join((missing + unexpected)[:3])})", "download it again: mgen download mbd")
    # a checkpoint saved in half precision computes in float32, as its weights did when copied in
    return Band(unet.float().eval(), Schedule.from_config(schedule_cfg), processor, cfg)


def load_checkpoint(path: Path | str) -> Checkpoint:
    """An audiocraft MBD checkpoint, loaded without running code from it."""
    path = Path(path)
    pkg = load_torch_file(path)
    if not isinstance(pkg, dict) or "n_bands" not in pkg or "sample_rate" not in pkg:
        raise MgenError(f"{path.name} is not a MultiBand Diffusion checkpoint (no n_bands / sample_rate)",
                        "give audiocraft's mbd_musicgen_32khz.th: mgen download mbd")
    rate = int(pkg["sample_rate"])
    bands = [_band(pkg.get(i), rate, i, path) for i in range(int(pkg["n_bands"]))]
    return Checkpoint(rate, bands, file_digest(path))


# -- writing: the random-weight checkpoint and tests ----------------------------------------

def random_package(configs: list[dict], seed: int = 0, sample_rate: int = 32000, bottleneck: dict | None = None) -> dict:
    """A checkpoint dict in the released layout with random weights and plausible band statistics."""
    gen = torch.Generator().manual_seed(seed)
    pkg: dict = {"sample_rate": sample_rate, "n_bands": len(configs)}
    for index, cfg in enumerate(configs):
        torch.manual_seed(seed + index)
        unet = DiffusionUNet(cfg["channels"], cfg["schedule"]["num_steps"], **cfg["diffusion_unet"], **(bottleneck or {}))
        proc_state: dict = {}
        if cfg["processor"]["use"]:
            n = cfg["processor"]["n_bands"]
            processor = BandProcessor(sample_rate, n_bands=n)
            counts = 10_000.0
            mean = torch.randn(n, generator=gen) * 1e-3
            std = torch.rand(n, generator=gen) * 0.1 + 0.01
            processor.counts.fill_(counts)
            processor.sum_x.copy_(mean * counts)
            processor.sum_x2.copy_((std**2 + mean**2) * counts)
            processor.sum_target_x2.copy_((torch.rand(n, generator=gen) * 0.2 + 0.05) * counts)
            proc_state = processor.state_dict()
        pkg[index] = {"cfg": cfg, "model_state": to_checkpoint_keys(unet.state_dict()), "processor_state": proc_state}
    return pkg


def write_checkpoint(path: Path | str, configs: list[dict], seed: int = 0, sample_rate: int = 32000,
                     bottleneck: dict | None = None) -> Path:
    """Write a random-weight checkpoint (torch.save, plain tensors and dicts) atomically."""
    path = Path(path)
    with atomic_path(path) as partial:
        torch.save(random_package(configs, seed, sample_rate, bottleneck), partial)
    return path


def describe(checkpoint: Checkpoint) -> dict:
    """What a sidecar records of the decoder: weights and schedule."""
    return {
        "name": "mbd",
        "weights_sha256": checkpoint.fingerprint,
        "bands": len(checkpoint.bands),
        "schedule": checkpoint.bands[0].schedule.record(),
        "eq_bands": EQ_BANDS,
    }


# -- decoding ------------------------------------------------------------------------------

def noise_source(generator: torch.Generator | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """Standard normal noise shaped like a tensor: from `generator`, else torch's global one."""
    if generator is None:
        return torch.randn_like
    return lambda like: torch.randn(like.shape, generator=generator, dtype=like.dtype, device=generator.device).to(like.device)


def latent(codec, codes: torch.Tensor) -> torch.Tensor:
    """EnCodec's quantised latent [B, D, frames] of mono codes [B, K, frames]: the codebook vectors' sum."""
    return codec.quantizer.decode(codes.transpose(0, 1))


def diffuse(checkpoint: Checkpoint, condition: torch.Tensor, shape: torch.Size, draw: Callable[[torch.Tensor], torch.Tensor],
            on_step: Callable[[], None] | None = None) -> torch.Tensor:
    """The sum of every band's sample for `condition`; each band starts from fresh noise."""
    device = condition.device
    out = torch.zeros(shape, device=device)
    for band in checkpoint.bands:
        x = sample(band.unet, band.schedule, draw(out), condition, draw, on_step)
        out += band.processor.return_sample(x) if band.processor is not None else x
    return out


def passes(checkpoint: Checkpoint) -> int:
    """U-Net forward passes per decoded channel."""
    return sum(len(band.schedule.steps) - 1 for band in checkpoint.bands)


def check_codec(checkpoint: Checkpoint, codec) -> None:
    """Refuse a codec the diffusion models were not trained on (another rate or latent width)."""
    rate = int(codec.config.sampling_rate)
    width = checkpoint.bands[0].cfg.get("diffusion_unet", {}).get("codec_dim")
    if rate != checkpoint.sample_rate or (width and int(width) != int(codec.config.hidden_size)):
        raise MgenError(
            f"the MultiBand Diffusion checkpoint is for a {checkpoint.sample_rate} Hz, {width}-wide EnCodec latent; "
            f"this model's codec is {rate} Hz, {codec.config.hidden_size} wide",
            "use --decoder encodec with this model",
        )


@torch.inference_mode()
def decode_mono(checkpoint: Checkpoint, codec, codes: torch.Tensor, reference: torch.Tensor,
                draw: Callable[[torch.Tensor], torch.Tensor], on_step: Callable[[], None] | None = None) -> torch.Tensor:
    """Mono codes [B, K, frames] -> audio shaped like `reference` (EnCodec's decoding of them),
    equalised to it over the whole batch as audiocraft does."""
    device = next(checkpoint.bands[0].unet.parameters()).device
    dtype = next(checkpoint.bands[0].unet.parameters()).dtype
    condition = latent(codec, codes.to(next(codec.parameters()).device)).to(device, dtype)
    reference = reference.to(device, dtype)
    wav = diffuse(checkpoint, condition, reference.shape, draw, on_step)
    return equalise(wav, reference, checkpoint.sample_rate)


# -- where the checkpoint lives --------------------------------------------------------------

MANIFEST_KEY = "mbd"  # `mgen download mbd`: the released checkpoint, through the manifest
RANDOM_FOLDER = "tiny-random-mbd"  # built on first use for random-weight models, as tiny-random is


def checkpoint_path(entry, folder: Path, *, download: bool = True, reporter: Reporter | None = None) -> Path:
    """The checkpoint for the model in `folder` (`entry`: its manifest entry, None for a plain
    folder): the random-weight one, built now if missing, for random-weight models (they say so
    in their ready marker too); else the released one, downloaded when allowed, else a
    ModelNotFound naming the command."""
    from musicgen_cli.store.cache import (
        hash_files,
        is_ready,
        mark_ready,
        read_marker,
        safe_child,
    )
    from musicgen_cli.store.manifest import load_manifest
    from musicgen_cli.store.models import model_folder

    reporter = reporter or NullReporter()
    random_weights = bool(entry and entry.random_weights) or bool(read_marker(folder).get("random_weights"))
    # built and cached models sit in the cache root; a plain folder uses the default cache
    manifest = load_manifest(folder.parent if entry is not None or random_weights else None)
    if random_weights:
        folder = safe_child(manifest.root, RANDOM_FOLDER)
        if not is_ready(folder):
            reporter.message("building a random-weight MultiBand Diffusion checkpoint (makes noise)")
            write_checkpoint(folder / CHECKPOINT_NAME, band_configs(unet=TINY_UNET))
            mark_ready(folder, {"key": RANDOM_FOLDER, "random_weights": True, "files": hash_files(folder)})
        return folder / CHECKPOINT_NAME
    entry = manifest.get(MANIFEST_KEY)
    if not manifest.is_cached(entry) and (not download or config.offline()):
        raise ModelNotFound("MultiBand Diffusion's weights (--decoder mbd) are not downloaded", f"run: mgen download {MANIFEST_KEY}")
    folder = model_folder(manifest, entry, download=download, reporter=reporter)
    path = folder / CHECKPOINT_NAME
    if not path.is_file():
        raise ModelNotFound(f"{folder} has no {CHECKPOINT_NAME}", f"run: mgen download {MANIFEST_KEY}")
    return path


def checkpoint_digest(path: Path) -> str:
    """A checkpoint's sha256 as its folder's ready marker records it (a verified download, or
    the random one as built), else read from the file."""
    from musicgen_cli.store.cache import read_marker

    recorded = (read_marker(path.parent).get("files") or {}).get(path.name) or {}
    return recorded.get("sha256") or file_digest(path)
