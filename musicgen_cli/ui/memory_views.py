"""Rich renderings of a memory plan and of a live memory readout (front end only)."""

from __future__ import annotations

import time
from itertools import groupby
from typing import Callable

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from musicgen_cli.planning.cpu_modes import KernelProbe
from musicgen_cli.planning.monitor import GpuProcess, Readout
from musicgen_cli.planning.planner import Plan
from musicgen_cli.ui.live import LiveDisplay
from musicgen_cli.units import human_bytes as human

_COLOURS = ("green", "cyan", "magenta", "blue")


def _where(device: int | str) -> str:
    return f"GPU {device}" if isinstance(device, int) else str(device).upper()


def _colour(device: int | str) -> str:
    if isinstance(device, int):
        return _COLOURS[device % len(_COLOURS)]
    return "yellow" if device == "cpu" else "red"


def hardware_table(plan: Plan) -> Table:
    machine = plan.machine
    simulated = set(machine["simulated"])
    table = Table(title="Hardware" + (" (simulated: " + ", ".join(sorted(simulated)) + ")" if simulated else ""), title_justify="left")
    for col in ("device", "total", "free", "mgen may use", "notes"):
        table.add_column(col, justify="right" if col in ("total", "free", "mgen may use") else "left")
    for gpu in machine["gpus"]:
        cc = ".".join(map(str, gpu["capability"]))
        table.add_row(
            f"GPU {gpu['index']}: {gpu['name']}",
            human(gpu["total_bytes"]),
            human(gpu["free_bytes"]),
            human(plan.budgets.get(gpu["index"], 0)),
            f"cc {cc}, {'bf16' if gpu['bf16'] else 'no bf16'}, {gpu['bandwidth_bytes_s'] / 1e9:.0f} GB/s",
        )
    if not machine["gpus"]:
        table.add_row("GPU", "-", "-", "-", "none: everything runs on the CPU")
    table.add_row("RAM", human(machine["ram_total_bytes"]), human(machine["ram_available_bytes"]), "", "")
    cores = f"{machine['physical_cores']} physical / {machine['logical_cores']} logical cores"
    disk = human(machine["disk_free_bytes"]) if machine["disk_free_bytes"] is not None else "?"
    table.add_row("CPU", "", "", "", cores)
    table.add_row("disk (cache)", "", disk, "", "")
    return table


def components_table(plan: Plan) -> Table:
    table = Table(title="Components and where they go", title_justify="left")
    for col in ("component", "size", "device", "dtype"):
        table.add_column(col, justify="right" if col == "size" else "left")
    rows = plan.components
    layers = [c for c in rows if c.name.startswith("decoder layer ")]
    for component in rows:
        if component in layers:
            continue
        table.add_row(component.name, human(component.bytes), f"[{_colour(component.device)}]{_where(component.device)}[/]", component.dtype)
        if component.name == "LM heads" and layers:
            start = 0
            for device, group in groupby(layers, key=lambda c: c.device):
                group = list(group)
                end = start + len(group) - 1
                label = f"decoder layers {start}-{end}" if end > start else f"decoder layer {start}"
                size = f"{len(group)} x {human(group[0].bytes)}"
                table.add_row(label, size, f"[{_colour(device)}]{_where(device)}[/]", group[0].dtype)
                start = end + 1
    table.add_row("[bold]total weights[/]", f"[bold]{human(sum(c.bytes for c in rows))}[/]", "", "")
    return table


def layer_picture(plan: Plan) -> Text:
    """One block per decoder layer: tall on a GPU, low on the CPU, shaded on disk."""
    glyph = {"cpu": "▁", "disk": "░"}
    devices = [d for k, d in plan.device_map.items() if ".layers." in k]
    text = Text("LM layers  ")
    for device, group in groupby(devices):
        n = len(list(group))
        text.append(f"{_where(device)} ", style=f"bold {_colour(device)}")
        text.append(glyph.get(device, "▇") * n, style=_colour(device))
        text.append(f" {n}  ")
    if plan.offload.mode:
        text.append(f"\n           offloaded layers are {'streamed to the GPU' if plan.offload.mode == 'stream' else 'computed on the CPU'}", style="dim")
    return text


def estimates_table(plan: Plan) -> Table:
    est = plan.estimates
    table = Table(title="Estimates", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_column("of", style="dim")
    for index, peak in est.peak_vram_bytes.items():
        budget = plan.budgets[index]
        table.add_row(f"peak VRAM, GPU {index}", human(peak), f"of {human(budget)} usable ({peak / budget:.0%})" if budget else "")
        if index in plan.workspace_reserve:
            table.add_row(f"workspace reserve, GPU {index}", human(plan.workspace_reserve[index]),
                          "cuBLAS/cuDNN workspace and fragmentation")
    ram_free = plan.machine["ram_available_bytes"]
    table.add_row("peak RAM", human(est.peak_ram_bytes), f"of {human(ram_free)} available ({est.peak_ram_bytes / ram_free:.0%})")
    table.add_row("decode step", f"{est.step_time_s * 1000:.1f} ms", f"{est.decode_steps} steps for {plan.job.duration_s:g} s")
    if plan.offload.stream_step_s is not None and plan.offload.cpu_step_s is not None:
        table.add_row(
            "offload choice",
            plan.offload.mode or "-",
            f"stream {plan.offload.stream_step_s * 1000:.1f} ms vs CPU {plan.offload.cpu_step_s * 1000:.1f} ms per step",
        )
    table.add_row("expected time", f"{est.total_time_s:.1f} s", f"{plan.job.num_samples} sample(s)")
    speed = est.realtime_factor
    table.add_row("speed", f"{speed:.2f}x real time", "faster than real time" if speed >= 1 else "slower than real time")
    codec = _where(plan.codec_device) + (f", {plan.codec_chunk_s:g} s chunks" if plan.codec_chunk_s else "")
    table.add_row("EnCodec decode", codec, plan.codec_dtype)
    if plan.diffusion_device is not None:
        seconds = plan.job.duration_s * plan.job.num_samples
        rate = est.diffusion_time_s / seconds if seconds else 0.0
        guess = ", an estimate" if isinstance(plan.diffusion_device, int) else ""
        table.add_row("MultiBand Diffusion", _where(plan.diffusion_device),
                      f"{human(est.diffusion_bytes)} of activations, {rate:.1f} s per second of audio{guess}")
    return table


def cpu_modes_table(plan: Plan) -> Table:
    """Each CPU mode's expected speed on this machine (the kernel probe) and its quality cost."""
    table = Table(title="CPU modes on this machine", title_justify="left")
    for col in ("mode", "options", "KV cache", "steps/s", "real time", "quality vs float32"):
        table.add_column(col, justify="right" if col in ("steps/s", "real time") else "left")
    frame_rate = plan.estimates.decode_steps / plan.job.duration_s if plan.job.duration_s else 50.0
    for row in plan.cpu_modes:
        chosen = row["mode"] == plan.cpu_kernel
        quality = row["quality"] if row["gated"] else f"{row['quality']}: not offered"
        table.add_row(("> " if chosen else "  ") + row["mode"], row["flags"] or "(default)", row.get("kv_cache", "float32"),
                      f"{row['steps_per_s']:.1f}",
                      f"{row['steps_per_s'] / frame_rate:.2f}x", quality, style="bold" if chosen else ("dim" if not row["gated"] else None))
    return table


def probe_view(probe: KernelProbe, before: KernelProbe | None = None) -> Group:
    """What the kernel probe measured: per mode the weights multiplied per second (and the
    previous figures), the KV cache's read rates, and the conditions."""
    table = Table(title="CPU kernel probe", title_justify="left")
    for col in ("mode", "weights/s now", "before"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for mode, rate in probe.params_per_s.items():
        old = before.params_per_s.get(mode) if before else None
        table.add_row(mode, f"{rate / 1e9:.2f} G", f"{old / 1e9:.2f} G" if old else "-")
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(probe.measured_at))
    lines = [(f"KV cache read by SDPA: float32 {probe.attention_bytes_s / 1e9:.1f} GB/s, "
              f"bf16 {probe.attention_bf16_bytes_s / 1e9:.1f} GB/s (reduced modes keep {probe.kv_dtype('int8-dynamic')}); "
              f"memory {probe.bandwidth_bytes_s / 1e9:.1f} GB/s; glue {probe.layer_glue_s * 1e3:.2f} ms/layer"),
             f"measured {when} at {probe.threads} threads, load average {probe.load_avg:.1f} on {probe.cores} cores"]
    if probe.contended:
        lines.append("provisional: the machine was busy; plans measure again until a quiet run")
    return Group(table, *(Text(line) for line in lines))


def plan_view(plan: Plan, title: str) -> Group:
    parts = [Text(title, style="bold"), hardware_table(plan), components_table(plan), layer_picture(plan), estimates_table(plan)]
    if plan.cpu_modes:
        parts.append(cpu_modes_table(plan))
    for warning in plan.warnings:
        style = "bold red" if "DISK" in warning else "yellow"
        parts.append(Text(f"! {warning}", style=style))
    return Group(*parts)


def _bar(fraction: float, width: int = 20) -> str:
    filled = max(0, min(width, round(fraction * width)))
    return "█" * filled + "·" * (width - filled)


def readout_view(readout: Readout, processes: list[GpuProcess] | None, cache_bytes: int | None, cache_dir: str) -> Group:
    table = Table(title="Memory now", title_justify="left")
    for col in ("what", "used", "total", ""):
        table.add_column(col, justify="right" if col in ("used", "total") else "left")
    for gpu in readout.gpus:
        util = f"{gpu.utilisation:.0f} % busy" if gpu.utilisation is not None else "utilisation unknown"
        table.add_row(
            f"GPU {gpu.index}: {gpu.name}",
            human(gpu.used_bytes),
            human(gpu.total_bytes),
            f"{_bar(gpu.used_bytes / gpu.total_bytes)} {util}",
        )
    if not readout.gpus:
        table.add_row("GPU", "-", "-", "no CUDA GPU visible to torch")
    table.add_row(
        "RAM",
        human(readout.ram_used_bytes),
        human(readout.ram_total_bytes),
        _bar(readout.ram_used_bytes / readout.ram_total_bytes),
    )
    table.add_row("this process (RSS)", human(readout.rss_bytes), "", f"peak {human(readout.peak_rss_bytes)}")
    table.add_row("model cache", human(cache_bytes) if cache_bytes is not None else "-", "", cache_dir)
    cores = Table(title=f"CPU {readout.cpu_percent:.0f} %", title_justify="left", show_header=False)
    cores.add_column("core")
    cores.add_column("use")
    for i, pct in enumerate(readout.per_core_percent):
        cores.add_row(f"core {i}", f"{_bar(pct / 100, 10)} {pct:3.0f} %")
    threads = Text(f"torch threads: {readout.torch_threads} intra-op, {readout.torch_interop_threads} inter-op")
    parts = [table, cores, threads]
    if processes is None:
        if readout.gpus:
            parts.append(Text("GPU processes: unknown (install nvidia-ml-py to ask the driver)", style="dim"))
    elif processes:
        procs = Table(title="Processes holding GPU memory", title_justify="left")
        for col in ("GPU", "pid", "name", "memory"):
            procs.add_column(col)
        for p in processes:
            procs.add_row(str(p.gpu), str(p.pid), p.name, human(p.used_bytes) if p.used_bytes is not None else "?")
        parts.append(procs)
    return Group(*parts)


class _Watch(LiveDisplay):
    def __init__(self, console: Console, view: Callable[[], RenderableType]) -> None:
        super().__init__(console)
        self.view = view
        self.current = view()

    def render(self) -> RenderableType:
        return self.current


def watch_readout(console: Console, view: Callable[[], RenderableType], every_s: float = 1.0) -> None:
    """Show `view()` and refresh it every `every_s` seconds until Ctrl-C (a new print when not on a terminal)."""
    try:
        with _Watch(console, view) as shown:
            while True:
                if not shown.live_mode:
                    console.print(shown.current)
                time.sleep(every_s)
                shown.current = view()
    except KeyboardInterrupt:
        pass
