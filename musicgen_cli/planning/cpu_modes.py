"""CPU decode modes: the weight format and kernel the LM decoder runs in on a CPU, how fast each
is on this machine, and which are good enough to offer.

A decode step reads every decoder weight once, so on a CPU the step time is the weight bytes
over memory bandwidth, if the kernel keeps up with memory; whether it does depends on the CPU
(VNNI, AVX-512 bf16, AMX, or none of them). So the speed of each mode comes from a short
measured probe (`engine/cpu_probe.py`), run once per machine, torch version and thread count,
and cached as JSON in the cache folder. The quality of each mode against float32 at the same
seed (share of equal tokens, log-spectral distance of the audio) comes from
benchmarks/bench_decode.py; the figures below are the ones in BENCHMARKS.md ("CPU decode modes"), and a
mode is suggested only when they pass the gates.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from musicgen_cli.arch import frame_rate, is_melody
from musicgen_cli.store.cache import atomic_write_text, cache_root

INT4_GROUP = 32  # input channels sharing one 4-bit scale and offset
# A reduced-precision mode is offered when, against float32 at the same seed, at least this
# share of tokens is equal and the decoded audio's log-spectral distance is at most this
# (two unrelated clips of the same model measure ~5.8 dB).
GATE_TOKENS_EQUAL = 85.0
GATE_LSD_DB = 3.0
PROBE_FILE = "cpu-kernels.json"
# Part of the cache key, raised whenever the loop calls a mode through another kernel (2: float32
# as a blocked batched GEMM; 3: reduced modes may keep a bf16 KV cache): figures probed by an
# older mgen no longer describe this one.
PROBE_VERSION = 3
# CPU features that decide which kernel is fast: the probe is keyed by them.
FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


@dataclass(frozen=True)
class CpuMode:
    name: str
    short: str  # benchmark column label
    flags: str  # the options that select it
    quantize: str | None
    dtype: str
    tokens_equal: float | None  # % equal to float32's tokens, same seed (BENCHMARKS.md)
    lsd_db: float | None  # log-spectral distance of the decoded audio to float32's, dB

    @property
    def gated(self) -> bool:
        """float32 is the reference; the others pass only with measured figures inside the gates."""
        if self.quantize is None and self.dtype == "float32":
            return True
        return (self.tokens_equal is not None and self.lsd_db is not None
                and self.tokens_equal >= GATE_TOKENS_EQUAL and self.lsd_db <= GATE_LSD_DB)

    @property
    def quality(self) -> str:
        if self.tokens_equal is None or self.lsd_db is None:
            return "reference" if self.gated else "not measured"
        return f"{self.tokens_equal:.1f}% same tokens, {self.lsd_db:.2f} dB"


# Quality figures: small-shaped model, a 30 s clip (1500 frames) at 2 threads on a 2-core AMX Xeon,
# each reduced mode with the KV cache it keeps there (bf16), bench_decode.py, BENCHMARKS.md "CPU decode modes".
CPU_MODES: dict[str, CpuMode] = {m.name: m for m in (
    CpuMode("float32", "fp32", "", None, "float32", None, None),
    CpuMode("bfloat16", "bf16", "--dtype bfloat16", None, "bfloat16", 97.5, 1.24),
    CpuMode("int8-weight-only", "int8 w-only", "--quantize int8", "int8", "float32", 97.9, 1.10),
    CpuMode("int8-dynamic", "int8 dynamic", "--quantize int8", "int8", "float32", 94.3, 2.23),
    CpuMode("int4-weight-only", "int4 w-only", "--quantize int4", "int4", "float32", 71.8, 4.42),
)}


def weight_bytes_per_param(mode: str) -> float:
    """Bytes a linear weight takes in `mode` (int4: half a byte plus a bf16 scale and offset per group)."""
    return {"float32": 4.0, "bfloat16": 2.0, "int8-weight-only": 1.0, "int8-dynamic": 1.0,
            "int4-weight-only": 0.5 + 4 / INT4_GROUP}[mode]


def linear_params(config) -> int:
    """Linear-layer weights one decode step multiplies by: self-attention, the cross-attention
    query and output (its keys and values are computed once per window), the FFN, the heads."""
    d = config.decoder
    h = d.hidden_size
    per_layer = 4 * h * h + 2 * h * d.ffn_dim + (0 if is_melody(config) else 2 * h * h)
    return d.num_hidden_layers * per_layer + d.num_codebooks * h * d.vocab_size


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform

        return platform.processor() or platform.machine()


def cpu_features() -> list[str]:
    try:
        with open("/proc/cpuinfo") as info:
            flags = next(line.split(":", 1)[1].split() for line in info if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return [f for f in FEATURES if f in flags]


def machine_key(threads: int, torch_version: str) -> str:
    return (f"probe {PROBE_VERSION} | {cpu_model()} | {' '.join(cpu_features())} | torch {torch_version} | "
            f"{threads} threads")


@dataclass
class KernelProbe:
    """What the probe measured: memory read bandwidth, per mode the linear-layer weights
    multiplied per second for one clip with guidance (2 rows), the rate SDPA reads a float32 KV
    cache, and what a layer costs per step beyond both (norms, attention calls, Python)."""

    machine_key: str
    threads: int
    bandwidth_bytes_s: float
    params_per_s: dict[str, float]
    measured_at: float = field(default_factory=time.time)
    load_avg: float = 0.0  # 1-minute load average while measuring
    cores: int = 1
    attention_bytes_s: float = 0.0  # 0: not measured (an older probe): the read bandwidth stands in
    layer_glue_s: float = 0.0
    attention_bf16_bytes_s: float = 0.0  # the same over a bf16 cache; 0: not measured
    # Per mode, measured steps/s of the last quiet whole run over what the parts above predict.
    # The parts are timed alone, each at its best, on working sets a large L3 may hold, so they
    # add up to a step faster than a real one (2x on a 2-core AMX Xeon, BENCHMARKS.md): a real
    # run is the only measurement of the whole, and it corrects the next plan.
    calibration: dict[str, float] = field(default_factory=dict)

    def kv_dtype(self, mode: str) -> str:
        """The KV cache's format in `mode`, as the loop picks it (`fastloop.attention_dtype`):
        float32 keeps float32; a reduced mode takes bf16 where it attends faster per position."""
        if mode == "float32" or self.attention_bf16_bytes_s / 2 <= self.attention_bytes_s / 4:
            return "float32"
        return "bfloat16"

    @property
    def contended(self) -> bool:
        """Measured while other work held the cores: the figures are lower bounds."""
        return self.load_avg > self.cores

    def merged(self, newer: "KernelProbe") -> "KernelProbe":
        """Contention only slows a kernel down: the faster figure of two probes is the truer one."""
        rates = {m: max(r, self.params_per_s.get(m, 0.0)) for m, r in newer.params_per_s.items()}
        glue = min((g for g in (newer.layer_glue_s, self.layer_glue_s) if g > 0), default=0.0)  # 0: unmeasured
        # The runs calibrated the older figures: kept only while those figures stand.
        same = rates == self.params_per_s and glue == self.layer_glue_s
        return KernelProbe(newer.machine_key, newer.threads, max(newer.bandwidth_bytes_s, self.bandwidth_bytes_s),
                           rates, newer.measured_at, min(newer.load_avg, self.load_avg), newer.cores,
                           max(newer.attention_bytes_s, self.attention_bytes_s), glue,
                           max(newer.attention_bf16_bytes_s, self.attention_bf16_bytes_s),
                           dict(self.calibration) if same else {})

    def steps_per_s(self, config, mode: str, positions: float, rows: int = 2) -> float:
        """Expected decode steps/s: the weights at the probed rate, the KV cache in its format
        (`kv_dtype`) at the rate SDPA reads that format, and each layer's glue."""
        d = config.decoder
        bf16 = self.kv_dtype(mode) == "bfloat16"
        kv = d.num_hidden_layers * 2 * rows * positions * d.hidden_size * (2 if bf16 else 4)
        rate = self.attention_bf16_bytes_s if bf16 else (self.attention_bytes_s or self.bandwidth_bytes_s)
        step = linear_params(config) / self.params_per_s[mode] + kv / rate + d.num_hidden_layers * self.layer_glue_s
        return self.calibration.get(mode, 1.0) / step


def probe_path(cache_dir: str | Path | None = None) -> Path:
    return cache_root(cache_dir) / PROBE_FILE


def cached_probe(key: str, cache_dir: str | Path | None = None) -> KernelProbe | None:
    try:
        data = json.loads(probe_path(cache_dir).read_text())[key]
        return KernelProbe(**data)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store_probe(probe: KernelProbe, cache_dir: str | Path | None = None) -> None:
    path = probe_path(cache_dir)
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    known[probe.machine_key] = asdict(probe)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(known, indent=2, sort_keys=True))


# A run teaches the estimate only when it is long enough for its steady state to dominate and
# nothing else held the cores (contention only slows a run: it would teach a slower machine).
LEARN_MIN_STEPS = 100
CALIBRATION_RANGE = (0.2, 5.0)  # beyond this the run measured something else than the plan assumed


def learn_from_run(plan, measured_steps_per_s: float, steps: int, load_avg: float, cores: int,
                   cache_dir: str | Path | None = None) -> float | None:
    """Correct the stored probe's estimate for the plan's CPU mode by a whole run's measured
    speed (a CPU plan made from a probe, a quiet run of `LEARN_MIN_STEPS` or more). Returns the
    calibration stored, or None when the run teaches nothing."""
    row = next((r for r in plan.cpu_modes if r["mode"] == plan.cpu_kernel), None)
    if row is None or plan.uses_gpu or steps < LEARN_MIN_STEPS or load_avg > cores or measured_steps_per_s <= 0:
        return None
    probe = cached_probe(plan.cpu_probe_key, cache_dir) if plan.cpu_probe_key else None
    if probe is None:
        return None
    low, high = CALIBRATION_RANGE
    # The row's speed was calibrated already: the new factor corrects that one.
    factor = probe.calibration.get(plan.cpu_kernel, 1.0) * measured_steps_per_s / row["steps_per_s"]
    if not low <= factor <= high:
        return None
    probe.calibration[plan.cpu_kernel] = round(factor, 3)
    store_probe(probe, cache_dir)
    return probe.calibration[plan.cpu_kernel]


def kernel_for(probe: KernelProbe | None, quantize: str | None, dtype: str) -> str:
    """The kernel behind the user's options: int8 takes the fastest gated int8 scheme the
    probe measured (weight-only, the closest to float32, when none is gated or no probe)."""
    if quantize == "int4":
        return "int4-weight-only"
    if quantize == "int8":
        candidates = [m for m in ("int8-dynamic", "int8-weight-only") if CPU_MODES[m].gated]
        if probe is None or not candidates:
            return "int8-weight-only"
        return max(candidates, key=lambda m: probe.params_per_s.get(m, 0.0))
    return "bfloat16" if dtype == "bfloat16" else "float32"


def mode_table(probe: KernelProbe, config, positions: float, rows: int) -> list[dict]:
    """Every mode with its expected speed on this machine and its quality figures."""
    table = []
    for mode in CPU_MODES.values():
        if mode.name not in probe.params_per_s:
            continue
        table.append({"mode": mode.name, "flags": mode.flags, "gated": mode.gated, "quality": mode.quality,
                      "kv_cache": probe.kv_dtype(mode.name),
                      "steps_per_s": round(probe.steps_per_s(config, mode.name, positions, rows), 2),
                      "calibration": probe.calibration.get(mode.name)})
    return table


def suggestion(table: list[dict], current: str) -> dict | None:
    """The fastest gated mode, when it is faster than the one planned."""
    gated = [row for row in table if row["gated"]]
    if not gated:
        return None
    best = max(gated, key=lambda row: row["steps_per_s"])
    now = next((row for row in table if row["mode"] == current), None)
    return best if best["mode"] != current and (now is None or best["steps_per_s"] > now["steps_per_s"]) else None


def annotate(plan, probe: KernelProbe | None, config) -> None:
    """Record the chosen kernel and every mode's expected speed in a CPU plan, take the step
    time from the probe, and add a line suggesting the fastest gated mode."""
    plan.cpu_kernel = kernel_for(probe, plan.quantize, plan.lm_dtype)
    chosen = CPU_MODES[plan.cpu_kernel]
    if not chosen.gated:
        plan.warnings.append(f"{plan.cpu_kernel} fails the quality gates ({chosen.quality} against float32): "
                             "expect clearly different audio")
    if probe is None:
        return
    if probe.contended:
        plan.warnings.append(f"the CPU speed figures are provisional: measured while the load average was "
                             f"{probe.load_avg:.1f} on {probe.cores} cores; they are measured again on the next "
                             "plan, or now with `mgen probe`")
    job = plan.job
    frames = min(job.duration_s, job.window_s) * frame_rate(config)
    rows = job.num_samples * (2 if job.guidance else 1)
    plan.cpu_modes = mode_table(probe, config, frames / 2, rows)
    plan.cpu_probe_key = probe.machine_key
    est = plan.estimates
    if probe.kv_dtype(plan.cpu_kernel) == "bfloat16" and plan.lm_dtype == "float32":
        # the planner counted the cache at the activations' width; the loop keeps it in half that
        d = config.decoder
        est.peak_ram_bytes -= int(d.num_hidden_layers * 2 * rows * frames * d.hidden_size * 2)
    plan.cpu_kv_dtype = probe.kv_dtype(plan.cpu_kernel)
    speeds = {row["mode"]: row["steps_per_s"] for row in plan.cpu_modes}
    if plan.cpu_kernel in speeds:
        step = 1.0 / speeds[plan.cpu_kernel]
        est.total_time_s += (step - est.step_time_s) * est.decode_steps
        est.step_time_s = step
        est.realtime_factor = job.duration_s * job.num_samples / est.total_time_s
    best = suggestion(plan.cpu_modes, plan.cpu_kernel)
    if best is not None:
        plan.warnings.append(
            f"on this CPU {best['flags']} ({best['mode']}) should run ~{best['steps_per_s']:.1f} decode steps/s "
            f"against {speeds.get(plan.cpu_kernel, 0):.1f} for {plan.cpu_kernel}; quality cost: {best['quality']}")
