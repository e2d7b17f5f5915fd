"""Where every part of MusicGen lives for one job on one machine, decided before loading.

`plan_memory` places the T5 text encoder on CPU, the LM's decoder layers across the GPUs
(balanced) and the CPU, EnCodec on a GPU when it fits (MultiBand Diffusion beside it when it
fits too, else on the CPU), and estimates peak VRAM per GPU, peak RAM and decode speed. The `Plan` it returns is what the loader consumes, as it is.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from musicgen_cli.arch import SHAPES, build_config
from musicgen_cli.config import force_cpu_codec
from musicgen_cli.errors import MgenError, PlanError
from musicgen_cli.planning import estimates as K
from musicgen_cli.planning.diffusion import DiffusionSizes, diffusion_sizes
from musicgen_cli.planning.hardware import Machine
from musicgen_cli.planning.job import Job
from musicgen_cli.planning.placement import (
    Layout,
    accelerate_map,
    balanced_counts,
    device_map_for,
    gpu_budget,
    gpu_overhead,
    gpu_peak,
    job_bytes_for,
    make_layout,
    mode_times,
    place_codec,
    place_diffusion,
    step_time,
    stream_counts,
    workspace_share,
)
from musicgen_cli.planning.sizing import (
    DECODER,
    DTYPE_BYTES,
    JobBytes,
    ModelSizes,
    decode_steps,
    model_sizes,
)


@dataclass
class Offload:
    """Decoder layers kept off the GPUs and how each decode step uses them."""

    cpu_layers: list[int] = field(default_factory=list)
    disk_layers: list[int] = field(default_factory=list)
    # "stream": copied to the GPU one layer ahead of use; "cpu": computed where they are;
    # None: nothing offloaded, or no GPU at all.
    mode: str | None = None
    stream_step_s: float | None = None
    cpu_step_s: float | None = None


@dataclass
class Estimates:
    peak_vram_bytes: dict[int, int]
    peak_ram_bytes: int
    step_time_s: float
    decode_steps: int
    total_time_s: float
    realtime_factor: float  # seconds of audio per wall-clock second (>1: faster than real time)
    diffusion_time_s: float = 0.0  # MultiBand Diffusion's share of total_time_s (an estimate on a GPU)
    diffusion_bytes: int = 0  # its peak activations beside its weights, on diffusion_device


@dataclass
class Component:
    name: str
    bytes: int
    device: int | str
    dtype: str


@dataclass
class Plan:
    model_type: str
    job: Job
    device_map: dict[str, int | str]
    lm_dtype: str
    quantize: str | None
    text_encoder_device: str
    text_encoder_dtype: str
    codec_device: int | str
    codec_dtype: str
    codec_chunk_s: float | None  # None: EnCodec decodes the clip in one go
    max_memory: dict[int | str, int]
    budgets: dict[int, int]  # VRAM per GPU the plan's tensors may take (after both reserves)
    # VRAM per GPU kept for cuBLAS/cuDNN workspaces and allocator fragmentation (estimates.workspace_reserve)
    workspace_reserve: dict[int, int]
    offload: Offload
    estimates: Estimates
    components: list[Component]
    warnings: list[str]
    machine: dict
    # CPU plans: the decoder kernel (planning/cpu_modes.py) and every mode's expected speed here.
    cpu_kernel: str | None = None
    cpu_modes: list[dict] = field(default_factory=list)
    cpu_kv_dtype: str | None = None  # the self-attention cache's format the probe expects the loop to pick
    cpu_probe_key: str | None = None  # the stored probe the speeds came from (a run corrects it)
    diffusion_device: int | str | None = None  # MultiBand Diffusion's device (beside EnCodec or on the CPU); None: not asked for

    def speed_check(self, measured_steps_per_s: float) -> dict:
        """The plan's expected decode speed against a run's: the error, in % of the measured."""
        expected = 1.0 / self.estimates.step_time_s if self.estimates.step_time_s else 0.0
        error = 100 * (expected - measured_steps_per_s) / measured_steps_per_s if measured_steps_per_s else 0.0
        return {"expected_steps_per_s": round(expected, 2), "measured_steps_per_s": round(measured_steps_per_s, 2),
                "error_pct": round(error, 1)}

    @property
    def lm_device(self) -> int | str:
        return self.device_map[f"{DECODER}.embed_tokens"]

    @property
    def host_weight_bytes(self) -> int:
        """Weights a load puts in host memory: T5 (float32), EnCodec on the CPU, decoder layers
        kept in RAM (page-locked behind a GPU at exactly this size)."""
        return sum(c.bytes for c in self.components if c.device == "cpu")

    @property
    def uses_gpu(self) -> bool:
        return any(isinstance(v, int) for v in self.device_map.values())

    def to_json(self) -> dict:
        data = asdict(self)
        # JSON keys are strings; GPU indices stay recognisable as digits.
        data["max_memory"] = {str(k): v for k, v in self.max_memory.items()}
        data["budgets"] = {str(k): v for k, v in self.budgets.items()}
        data["workspace_reserve"] = {str(k): v for k, v in self.workspace_reserve.items()}
        data["estimates"]["peak_vram_bytes"] = {str(k): v for k, v in self.estimates.peak_vram_bytes.items()}
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Plan":
        def keys(d: dict) -> dict:
            return {int(k) if str(k).isdigit() else k: v for k, v in d.items()}

        est = dict(data["estimates"], peak_vram_bytes=keys(data["estimates"]["peak_vram_bytes"]))
        return cls(
            **{
                **data,
                "job": Job(**data["job"]),
                "max_memory": keys(data["max_memory"]),
                "budgets": keys(data["budgets"]),
                "workspace_reserve": keys(data.get("workspace_reserve", {})),
                "offload": Offload(**data["offload"]),
                "estimates": Estimates(**est),
                "components": [Component(**c) for c in data["components"]],
            }
        )


def same_placement(a: Plan, b: Plan) -> bool:
    """Whether a model loaded by plan `b` is where plan `a` wants it (nothing to load again)."""

    def where(p: Plan) -> tuple:
        return (p.device_map, p.offload.cpu_layers, p.offload.disk_layers, p.offload.mode, p.lm_dtype, p.quantize,
                p.codec_device, p.codec_dtype, p.text_encoder_device, p.cpu_kernel)

    return where(a) == where(b)


def plan_memory(
    config,
    job: Job,
    machine: Machine,
    *,
    dtype: str | None = None,
    quantize: str | None = None,
    reserve_bytes: int | None = None,
    max_vram_bytes: int | None = None,
) -> Plan:
    """Place the model for `job` on `machine`; PlanError (with what would fit) when nothing does."""
    _check_inputs(job, dtype, quantize)
    sizes = model_sizes(config)
    try:
        return _plan(sizes, config, job, machine, dtype, quantize, reserve_bytes, max_vram_bytes)
    except _NoFit as exc:
        raise PlanError(str(exc), _alternatives(sizes, config, job, machine, dtype, quantize, reserve_bytes, max_vram_bytes)) from None


# EnCodec decodes in float32 on every device, as audiocraft does: in bfloat16 its output drifts
# audibly from the float32 decode (56 dB SNR on random weights), and it is small.
CODEC_DTYPE = "float32"


DIFFUSION_ROW = "MultiBand Diffusion"  # its row in the plan's components


class _NoFit(Exception):
    pass


def check_dtype(dtype: str | None) -> None:
    """The LM dtypes offered: float32 and bfloat16 (None: planned for the device)."""
    if dtype == "float16":
        # A float16 model (not fp16 autocast with float32 norms, softmax and logits, as audiocraft
        # runs it) overflows to NaN/inf at real shapes; bfloat16 has float32's range.
        raise MgenError("float16 is not offered: a float16 model overflows where bfloat16 and float32 do not",
                        "use bfloat16 on a GPU of compute capability 8.0 (Ampere) or newer, else float32")
    if dtype is not None and dtype not in DTYPE_BYTES:
        raise MgenError(f"unknown dtype {dtype!r}", "use float32 or bfloat16")


def _check_inputs(job: Job, dtype: str | None, quantize: str | None) -> None:
    if not job.duration_s > 0:
        raise MgenError(f"duration {job.duration_s} s is not positive", "pass --duration greater than 0")
    if job.num_samples < 1:
        raise MgenError(f"{job.num_samples} samples requested", "pass --num-samples 1 or more")
    if not job.window_s > 0:
        raise MgenError(f"window {job.window_s} s is not positive", "use a window of a few seconds or more")
    check_dtype(dtype)
    if quantize not in (None, "int8", "int4"):
        raise MgenError(f"unknown quantisation {quantize!r}", "use int8, int4 or leave it out")


def _plan(sizes: ModelSizes, config, job, machine, dtype, quantize, reserve_bytes, max_vram_bytes) -> Plan:
    warnings: list[str] = []
    gpus = list(machine.gpus)
    budgets = {g.index: gpu_budget(g, reserve_bytes, max_vram_bytes) for g in gpus}
    workspace = {g.index: workspace_share(g, reserve_bytes, max_vram_bytes) for g in gpus}
    gpus = [g for g in gpus if budgets[g.index] > 0]
    if machine.gpus and not gpus:
        warnings.append("no GPU has memory to spare after the reserve: everything runs on the CPU")
    if dtype == "bfloat16" and gpus and not all(g.bf16 for g in gpus):
        old = next(g for g in gpus if not g.bf16)
        raise MgenError(f"GPU {old.index} ({old.name}, compute capability {old.capability[0]}.{old.capability[1]}) "
                        "has no bfloat16 support (it needs 8.0, Ampere, or newer)", "use --dtype float32, or leave --dtype out")
    if quantize == "int4" and gpus:
        raise MgenError("int4 runs on the CPU only", "use --quantize int8 on a GPU, or --device cpu for int4")
    lm_dtype = dtype or ("bfloat16" if gpus and all(g.bf16 for g in gpus) else "float32")
    w = sizes.layer_bytes(lm_dtype, quantize)
    fixed = sizes.nbytes(sizes.lm_fixed_keys, lm_dtype)
    jb = job_bytes_for(sizes, job, lm_dtype, CODEC_DTYPE)
    main = gpus[0].index if gpus else None
    diffusion = diffusion_sizes(int(config.audio_encoder.hidden_size), sizes.sample_rate) if job.decoder == "mbd" else None

    room = balanced_counts(sizes.num_layers, gpus, budgets, fixed + jb.step_transient, w + jb.kv_per_layer, gpu_overhead(jb.kv_per_layer))
    if gpus and not any(room.values()):
        warnings.append(f"not even one decoder layer fits in {_gib(budgets[main])} of VRAM next to the embeddings: the LM runs on the CPU")
        gpus, main = [], None
        lm_dtype = dtype or "float32"
        jb = job_bytes_for(sizes, job, lm_dtype, CODEC_DTYPE)

    def layouts(lm_budgets: dict[int, int]) -> list[Layout]:
        # Balanced layers per GPU, assuming offloaded layers run on the CPU (their KV in RAM);
        # then the streaming alternative, whose main GPU also holds the offloaded layers' KV.
        counts = balanced_counts(sizes.num_layers, gpus, lm_budgets, fixed + jb.step_transient, w + jb.kv_per_layer, gpu_overhead(jb.kv_per_layer))
        if not gpus or sum(counts.values()) == sizes.num_layers:
            return [make_layout(counts, sizes, None)]
        found = [make_layout(counts, sizes, "cpu")]
        streamed = stream_counts(dict(counts), sizes, lm_budgets, main, fixed + jb.step_transient, w, jb.kv_per_layer)
        if streamed is not None:
            found.append(make_layout(streamed, sizes, "stream"))
        return found

    # Either the LM takes what it can and EnCodec gets what is left, or EnCodec's room (in
    # chunks) is set aside first on the last GPU; the faster job wins.
    variants = [layouts(budgets)]
    if gpus and not force_cpu_codec():
        last = gpus[-1].index
        codec_room = sizes.nbytes(["audio_encoder"], CODEC_DTYPE) + job_bytes_for(sizes, job, lm_dtype, CODEC_DTYPE, codec_budget=0).codec_decode_vram
        codec_room += jb.audio_out
        if diffusion is not None:  # MultiBand Diffusion set aside with EnCodec, where the runtime puts it
            codec_room += diffusion.job_bytes(job, cpu=False)
        variants.append(layouts({**budgets, last: max(0, budgets[last] - codec_room)}))
    best, best_group, misses = None, [], []
    for group in variants:
        for layout in group:
            place_codec(layout, sizes, job, gpus, budgets, lm_dtype, quantize, CODEC_DTYPE)
            place_diffusion(layout, diffusion, sizes, job, budgets, lm_dtype, quantize, CODEC_DTYPE)
            try:
                plan = _evaluate(layout, sizes, job, machine, lm_dtype, quantize, budgets, warnings, workspace, diffusion)
            except _NoFit as exc:
                misses.append(exc)
                continue
            if best is None or plan.estimates.total_time_s < best.estimates.total_time_s:
                best, best_group = plan, group
    if best is None:
        raise misses[0]
    if best.offload.mode:
        best.offload.stream_step_s, best.offload.cpu_step_s = mode_times(best_group, sizes, job, machine, lm_dtype, quantize)
    if quantize or "disk" in best.device_map.values():
        # Only these load through accelerate's dispatch; the loader places every other plan itself.
        best.device_map = accelerate_map(config, best, sizes, lm_dtype)
    return best


def _evaluate(layout: Layout, sizes, job, machine: Machine, lm_dtype, quantize, budgets, shared_warnings, workspace,
              diffusion: DiffusionSizes | None = None) -> Plan:
    """The plan of one layout: its VRAM, its RAM (and disk), its time and its parts; _NoFit when it does not fit."""
    warnings = list(shared_warnings)
    codec_dtype = CODEC_DTYPE
    jb = job_bytes_for(sizes, job, lm_dtype, codec_dtype)
    if layout.codec_chunk_s:
        jb = job_bytes_for(sizes, job, lm_dtype, codec_dtype, codec_budget=0)
    peak_vram = _vram(layout, sizes, jb, lm_dtype, quantize, codec_dtype, budgets, diffusion, job)
    memory = _ram_and_disk(layout, sizes, job, machine, jb, lm_dtype, quantize, codec_dtype, diffusion)
    jb = memory.jb
    warnings += memory.warnings
    step, steps, total = _time(layout, sizes, job, machine, jb, lm_dtype, quantize)
    diffusion_s = diffusion_time(diffusion, layout.diffusion_device, sizes, job, machine) if diffusion else 0.0
    total += diffusion_s
    offloaded = [i for i, d in enumerate(layout.layer_device) if d == "cpu"]
    warnings += _placement_warnings(layout, sizes, job, offloaded)
    main = layout.main
    return Plan(
        model_type=sizes.model_type,
        job=job,
        device_map=device_map_for(layout, sizes),
        lm_dtype=lm_dtype,
        quantize=quantize,
        text_encoder_device="cpu",
        text_encoder_dtype="float32",
        codec_device=layout.codec_device,
        codec_dtype=codec_dtype,
        codec_chunk_s=layout.codec_chunk_s,
        max_memory={**{i: budgets[i] for i in sorted(budgets)}, "cpu": max(0, int(memory.budget - memory.fixed))},
        budgets=dict(budgets),
        workspace_reserve=dict(workspace),
        offload=Offload(
            cpu_layers=[i for i in offloaded] if main != "cpu" else [],
            disk_layers=memory.disk_layers,
            mode=layout.mode if (offloaded and main != "cpu") else None,
        ),
        estimates=Estimates(
            peak_vram_bytes=peak_vram,
            peak_ram_bytes=int(memory.ram),
            step_time_s=step,
            decode_steps=steps,
            total_time_s=total,
            realtime_factor=job.duration_s * job.num_samples / total,
            diffusion_time_s=diffusion_s,
            diffusion_bytes=_diffusion_bytes(diffusion, layout.diffusion_device, job),
        ),
        components=_components(layout, sizes, lm_dtype, quantize, codec_dtype, diffusion),
        warnings=warnings,
        machine=machine.summary(),
        diffusion_device=layout.diffusion_device,
    )


def _diffusion_bytes(diffusion: DiffusionSizes | None, device, job) -> int:
    """MultiBand Diffusion's activations where it runs (0 when it is not asked for)."""
    return diffusion.decode_bytes(job.duration_s + job.prompt_s, cpu=device == "cpu") if diffusion else 0


def diffusion_time(diffusion: DiffusionSizes, device, sizes, job, machine: Machine) -> float:
    """Seconds MultiBand Diffusion takes for the job: every channel of every clip, each its
    passes over the whole clip, at the convolution rate of the device it runs on."""
    seconds = job.duration_s + job.prompt_s
    if isinstance(device, int):
        gpu = next(g for g in machine.gpus if g.index == device)
        one = diffusion.pass_seconds(seconds, K.GPU_CONV_FLOPS, K.GPU_OP_OVERHEAD_S, gpu.bandwidth_bytes_s * K.GPU_BANDWIDTH_EFFICIENCY)
    else:
        one = diffusion.pass_seconds(seconds, K.CPU_CONV_FLOPS_PER_CORE * machine.physical_cores, K.CPU_OP_OVERHEAD_S)
    return job.num_samples * sizes.audio_channels * diffusion.passes * one


def _vram(layout: Layout, sizes, jb: JobBytes, lm_dtype, quantize, codec_dtype, budgets, diffusion=None, job=None) -> dict[int, int]:
    """Peak VRAM per GPU: the LM's share, and EnCodec with its decode where it runs on that GPU;
    MultiBand Diffusion's weights and activations on top where it runs there (kept for the
    whole session, so counted over every phase)."""
    peak_vram = {index: gpu_peak(layout, sizes, jb, lm_dtype, quantize, codec_dtype, index, codec=layout.codec_device == index)
                 for index in sorted(budgets)}
    if diffusion is not None and isinstance(layout.diffusion_device, int):
        peak_vram[layout.diffusion_device] += diffusion.job_bytes(job, cpu=False)
    for index, use in peak_vram.items():
        if use > budgets[index]:
            raise AssertionError(f"planner bug: GPU {index} planned {use} bytes over its budget {budgets[index]}")
    return peak_vram


@dataclass
class _Memory:
    ram: float  # the planned peak (anonymous memory)
    fixed: float  # what does not scale with the layers kept in RAM
    budget: float  # what the machine offers
    disk_layers: list[int]
    jb: JobBytes  # the job's bytes, with EnCodec chunked when that made it fit
    warnings: list[str]


def _ram_and_disk(layout: Layout, sizes, job, machine: Machine, jb: JobBytes, lm_dtype, quantize, codec_dtype,
                  diffusion: DiffusionSizes | None = None) -> _Memory:
    """RAM: the runtime, T5 (float32), CPU-resident LM parts, and the CPU's share of the job;
    EnCodec chunked, then the last CPU layers on disk, when that is what makes it fit."""
    main = layout.main
    w = sizes.layer_bytes(lm_dtype, quantize)
    cpu_layers = [i for i, d in enumerate(layout.layer_device) if d == "cpu"]
    # RAM counts anonymous memory (what must fit); the runtime is this process as probed when it
    # already holds more than a fresh one (torch, transformers, models loaded).
    runtime = max(K.RUNTIME_BASE_ANON, machine.process_anon_bytes)
    ram = runtime + sizes.nbytes(["text_encoder"], "float32") + jb.text_encoder_run + jb.audio_out
    if main != "cpu":
        ram += K.CUDA_HOST_RSS_BYTES
    else:
        ram += sizes.nbytes(sizes.lm_fixed_keys, lm_dtype) + jb.step_transient
    if layout.codec_device == "cpu":
        ram += sizes.nbytes(["audio_encoder"], "float32") + jb.codec_decode
    if diffusion is not None and layout.diffusion_device == "cpu":
        ram += diffusion.job_bytes(job, cpu=True)
    kv_in_ram = layout.mode != "stream"
    ram_fixed = ram
    ram += len(cpu_layers) * (w + (jb.kv_per_layer if kv_in_ram else 0))

    ram_budget = machine.ram_available_bytes - K.RAM_RESERVE
    if ram > ram_budget and layout.codec_device == "cpu" and not layout.codec_chunk_s:
        chunked = job_bytes_for(sizes, job, lm_dtype, codec_dtype, codec_budget=0)
        if chunked.codec_chunk_s:
            layout.codec_chunk_s = chunked.codec_chunk_s
            ram -= jb.codec_decode - chunked.codec_decode
            ram_fixed -= jb.codec_decode - chunked.codec_decode
            jb = chunked
    disk_layers: list[int] = []
    warnings: list[str] = []
    if ram > ram_budget:
        # Push the last CPU layers to disk, one at a time, until the rest fits.
        per_layer = w + (jb.kv_per_layer if kv_in_ram else 0)
        while cpu_layers and ram > ram_budget:
            disk_layers.insert(0, cpu_layers.pop())
            ram -= w
        if ram > ram_budget:
            raise _NoFit(
                f"{job.duration_s:g} s x {job.num_samples} sample(s) needs {_gib(ram)} of RAM even with the "
                f"decoder on disk; {_gib(ram_budget)} is usable"
            )
        disk_bytes = len(disk_layers) * w
        if machine.disk_free_bytes is not None and disk_bytes > machine.disk_free_bytes:
            raise _NoFit(f"needs {_gib(ram_fixed + per_layer)} of RAM plus {_gib(disk_bytes)} of disk; neither is free")
        for i in disk_layers:
            layout.layer_device[i] = "disk"
        warnings.append(
            f"RAM IS SHORT: {len(disk_layers)} decoder layers ({_gib(disk_bytes)}) are offloaded to DISK "
            "and read back every step; expect generation to be very slow"
        )
    return _Memory(ram, ram_fixed, ram_budget, disk_layers, jb, warnings)


def _time(layout: Layout, sizes, job, machine: Machine, jb: JobBytes, lm_dtype, quantize) -> tuple[float, int, float]:
    """(seconds a decode step takes, decode steps, seconds for the whole job)."""
    step = step_time(layout, sizes, jb, machine, lm_dtype, quantize)
    steps = decode_steps(job.duration_s, sizes)
    codec_rate = (
        K.CODEC_S_PER_AUDIO_S_GPU if isinstance(layout.codec_device, int) else K.CODEC_S_PER_AUDIO_S_CPU_CORE / machine.logical_cores
    )
    total = K.TEXT_ENCODER_S + steps * step + job.duration_s * job.num_samples * sizes.audio_channels * codec_rate
    return step, steps, total


def _placement_warnings(layout: Layout, sizes, job, offloaded: list[int]) -> list[str]:
    """What the user should know about where things run."""
    warnings = []
    if offloaded and layout.main != "cpu":
        how = "streamed to the GPU one layer ahead" if layout.mode == "stream" else "computed on the CPU"
        warnings.append(f"{len(offloaded)} of {sizes.num_layers} decoder layers do not fit in VRAM: they stay in RAM, {how}")
    if layout.main != "cpu" and layout.codec_device == "cpu":
        reason = "FORCE_CPU_COMP=1" if force_cpu_codec() else "it does not fit next to the LM"
        warnings.append(f"EnCodec decodes on the CPU ({reason})")
    if layout.codec_chunk_s:
        warnings.append(f"EnCodec decodes in {layout.codec_chunk_s:g} s chunks to stay within memory")
    if isinstance(layout.codec_device, int) and layout.diffusion_device == "cpu":
        warnings.append("MultiBand Diffusion decodes on the CPU (it does not fit next to the LM and EnCodec): slow")
    if job.duration_s > job.window_s:
        warnings.append(f"{job.duration_s:g} s is longer than the {job.window_s:g} s window: generated in overlapping windows")
    return warnings


def _components(layout: Layout, sizes, lm_dtype, quantize, codec_dtype, diffusion: DiffusionSizes | None = None) -> list[Component]:
    """Each part of the model, its size, device and dtype (memory-plan's table)."""
    w = sizes.layer_bytes(lm_dtype, quantize)
    components = [Component("text encoder (T5)", sizes.nbytes(["text_encoder"], "float32"), "cpu", "float32")]
    components += [
        Component(name, sizes.nbytes([key], lm_dtype), layout.main, lm_dtype)
        for name, key in (("LM embeddings", f"{DECODER}.embed_tokens"), ("LM heads", "decoder.lm_heads"))
    ]
    components += [
        Component(f"decoder layer {i}", w, d, f"{quantize}/{lm_dtype}" if quantize else lm_dtype)
        for i, d in enumerate(layout.layer_device)
    ]
    components.append(Component("EnCodec", sizes.nbytes(["audio_encoder"], codec_dtype), layout.codec_device, codec_dtype))
    if diffusion is not None:
        components.append(Component(DIFFUSION_ROW, diffusion.weight_bytes, layout.diffusion_device, "float32"))
    return components


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _alternatives(sizes, config, job, machine, dtype, quantize, reserve_bytes, max_vram_bytes) -> str:
    """What would fit instead, tried for real: a shorter clip, int8, fewer samples, a smaller model."""

    def fits(**change) -> bool:
        options = dict(dtype=dtype, quantize=quantize)
        options.update({k: v for k, v in change.items() if k in options})
        trial = Job(**{**asdict(job), **{k: v for k, v in change.items() if k in asdict(job)}})
        try:
            _plan(sizes, config, trial, machine, options["dtype"], options["quantize"], reserve_bytes, max_vram_bytes)
        except _NoFit:
            return False
        return True

    ideas = []
    duration = job.duration_s / 2
    while duration >= 1:
        if fits(duration_s=duration):
            ideas.append(f"a shorter clip (--duration {math.floor(duration)})")
            break
        duration /= 2
    if quantize is None and fits(quantize="int8"):
        ideas.append("int8 weights (--quantize int8)")
    if job.decoder == "mbd" and fits(decoder="encodec"):
        ideas.append("EnCodec's decoder (--decoder encodec)")
    if job.num_samples > 1 and fits(num_samples=1):
        ideas.append("fewer samples (--num-samples 1)")
    if sizes.hidden > SHAPES["small"][0]:
        variant = "melody" if not sizes.cross_attention else "stereo" if sizes.audio_channels == 2 else "mono"
        smaller = build_config("small", variant)
        try:
            _plan(model_sizes(smaller), smaller, job, machine, dtype, quantize, reserve_bytes, max_vram_bytes)
            ideas.append("a smaller model (--size small)")
        except _NoFit:
            pass
    if not ideas:
        return "free RAM or plan for a machine with more memory (--ram, --gpu-mem)"
    return "try " + ", or ".join(ideas)
