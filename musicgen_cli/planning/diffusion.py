"""MultiBand Diffusion in the plan: its weights, the activations of one decode and its time,
from the U-Net's shapes (arch/diffusion.py built on the meta device: no weights, no compute).

`MusicGen.decode` runs the diffusion on one channel of one clip at a time: each band's U-Net
20 times over the whole channel (batch 1), then the sum is equalised to EnCodec's decoding in
32 mel bands. So its memory is what one pass (or the equalisation) holds for one channel of
the clip's length, beside the weights; its time is every channel of every clip times its
passes, each a pass's convolution FLOPs at the device's rate.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from musicgen_cli.planning import estimates as K

FLOAT32 = 4


@dataclass(frozen=True)
class DiffusionSizes:
    """One MBD checkpoint's sizes; the `_per_s` figures are for one second of audio, batch 1."""

    weight_bytes: int  # every band's U-Net and band statistics, float32
    bands: int
    passes: int  # U-Net forwards per channel of a clip (bands x steps)
    largest_conv_bytes: int  # oneDNN copies a conv's weights into its blocked layout at each CPU call
    skip_bytes_per_s: float  # the encoder levels' outputs, held for the decoder levels
    widest_level_bytes_per_s: float  # the largest of those outputs
    flops_per_s: float  # the convolutions of one pass
    modules_per_pass: int  # layers a pass runs, each at least one kernel launch or dispatch
    sample_rate: int

    def live_bytes(self, duration_s: float, cpu: bool) -> int:
        """Bytes alive beside the weights at the peak of one channel's decode of a `duration_s`
        clip: a U-Net pass, or the equalisation after the last one, whichever holds more."""
        samples = duration_s * self.sample_rate
        unet = (self.skip_bytes_per_s + K.MBD_LIVE_LEVELS * self.widest_level_bytes_per_s) * duration_s
        unet += K.MBD_CHAIN_TENSORS * samples * FLOAT32 + (self.largest_conv_bytes if cpu else 0)
        equalise = K.MBD_EQ_BAND_STACKS * K.MBD_EQ_BANDS * samples * FLOAT32
        return int(max(unet, equalise))

    def decode_bytes(self, duration_s: float, cpu: bool) -> int:
        """What the plan holds for that decode: the live bytes, with the allocator's slack."""
        return int(self.live_bytes(duration_s, cpu) * (K.CPU_HEAP_SLACK if cpu else K.ALLOCATOR_SLACK))

    def job_bytes(self, job, cpu: bool) -> int:
        """What MBD holds where it runs for `job` (the clip with its continuation): its weights
        and one decode's activations."""
        return self.weight_bytes + self.decode_bytes(job.duration_s + job.prompt_s, cpu)

    def pass_seconds(self, duration_s: float, flops_per_s: float, op_overhead_s: float, weights_per_s: float | None = None) -> float:
        """One pass over `duration_s` of audio on a device doing `flops_per_s` (and reading its
        band's weights at `weights_per_s` where that bounds it: a GPU)."""
        compute = self.flops_per_s * duration_s / flops_per_s
        reads = self.weight_bytes / self.bands / weights_per_s if weights_per_s else 0.0
        return max(compute, reads) + self.modules_per_pass * op_overhead_s


@functools.lru_cache(maxsize=4)
def diffusion_sizes(codec_width: int, sample_rate: int = 32000) -> DiffusionSizes:
    """The sizes of the MBD a model with a `codec_width`-wide EnCodec latent decodes with: the
    released checkpoint's layout, or the random set-up check's for the tiny codec (a checkpoint
    conditions on its codec's latent, so the width says which one a model gets)."""
    import torch

    from musicgen_cli.arch.diffusion import DEFAULT_STEPS, TINY_UNET, DiffusionUNet, band_configs

    configs = band_configs(sample_rate, unet=TINY_UNET if codec_width == TINY_UNET["codec_dim"] else None)
    weight_bytes, largest, flops, modules = 0, 0, 0.0, 0
    levels: list[int] = []
    for index, cfg in enumerate(configs):
        with torch.device("meta"):
            unet = DiffusionUNet(cfg["channels"], cfg["schedule"]["num_steps"], **cfg["diffusion_unet"])
        weight_bytes += sum(p.numel() for p in unet.parameters()) * FLOAT32
        # band statistics (three sums per processor band and a count); julius' filters are rebuilt
        weight_bytes += (3 * cfg["processor"]["n_bands"] + 1) * FLOAT32 if cfg["processor"]["use"] else 0
        if index:
            continue  # every band has the same shape: one pass measured stands for all
        convs = [m for m in unet.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d))]
        largest = max(m.weight.numel() * FLOAT32 for m in convs)
        modules = sum(1 for m in unet.modules() if not list(m.children()))
        work: list[float] = []

        def count(module, inputs, output, work=work):
            # 2 FLOPs a multiply-add: each output (input, for a transposed conv) meets one kernel
            kernel = module.weight.shape[1] * module.weight.shape[2]
            positions = inputs[0] if isinstance(module, torch.nn.ConvTranspose1d) else output
            work.append(2 * positions.numel() * kernel)

        hooks = [m.register_forward_hook(count) for m in convs]
        hooks += [e.register_forward_hook(lambda m, i, o: levels.append(o.numel() * FLOAT32)) for e in unet.encoders]
        width = cfg["diffusion_unet"]["codec_dim"]
        frames = 50  # one second of EnCodec frames; the latent's length does not change the U-Net's work
        unet(torch.empty(1, cfg["channels"], sample_rate, device="meta"), 0, condition=torch.empty(1, width, frames, device="meta"))
        for hook in hooks:
            hook.remove()
        flops = float(sum(work))
    return DiffusionSizes(
        weight_bytes=weight_bytes,
        bands=len(configs),
        passes=len(configs) * (len(DEFAULT_STEPS) - 1),
        largest_conv_bytes=largest,
        skip_bytes_per_s=float(sum(levels)),
        widest_level_bytes_per_s=float(max(levels)),
        flops_per_s=flops,
        modules_per_pass=modules,
        sample_rate=sample_rate,
    )
