"""A job run exactly as planned on this machine's GPU: predicted vs measured peak VRAM, decode
speed, and for plans with decoder layers in RAM, bytes streamed per step against the measured
pinned host-to-device bandwidth.

    PYTHONPATH=. python benchmarks/bench_gpu_plan.py --shape small
    PYTHONPATH=. python benchmarks/bench_gpu_plan.py --shape large --card-gib 8   # as on an 8 GiB card
    PYTHONPATH=. python benchmarks/bench_gpu_plan.py --shape large --card-gib 8 --mode cpu   # RAM layers on the CPU
    PYTHONPATH=. python benchmarks/bench_gpu_plan.py --shape tiny --standin        # CPU stand-in (dry run)

Random-weight models of the released shapes, built on the GPU, placed by the loader's own
placement (`engine.loader.place_by_plan`) and generated through `MusicGen.generate`.
`--card-gib N` plans as on an N GiB card (its CUDA context and default reserve taken off).
`FIGURE` lines are what benchmarks/gpu_check.sh puts in its summary; a predicted peak VRAM off
the measured one by more than `--tolerance` prints a `FAIL` line and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musicgen_cli.arch import build_config  # noqa: E402
from musicgen_cli.decode.offload import _per_step_tensors  # noqa: E402
from musicgen_cli.engine.loader import LoadedModel, place_by_plan  # noqa: E402
from musicgen_cli.engine.musicgen import GenerateSettings, MusicGen  # noqa: E402
from musicgen_cli.planning import estimates as K  # noqa: E402
from musicgen_cli.planning.hardware import probe, simulate  # noqa: E402
from musicgen_cli.planning.planner import Job, plan_memory  # noqa: E402
from musicgen_cli.testing import ModelSpec, build_model, build_tokenizer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="small", choices=["tiny", "small", "medium", "large"])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of audio the job asks for")
    parser.add_argument("--card-gib", type=float, help="plan as on a card of this size")
    parser.add_argument("--standin", action="store_true", help="CPU stand-in for GPU 0 (the dry run)")
    parser.add_argument("--mode", choices=["cpu", "stream"], help="force this handling of the layers in RAM "
                        "(by planning as if the other one's link were useless)")
    parser.add_argument("--tolerance", type=float, default=0.15, help="largest |predicted - measured| / measured peak VRAM")
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    args = parser.parse_args()

    standin = args.standin or not torch.cuda.is_available()
    device = torch.device("cpu") if standin else torch.device("cuda", 0)
    config = build_config(args.shape, "mono")
    machine = simulate(probe(), gpu_mem=[int((args.card_gib or 8) * 2**30)]) if standin else probe()
    if args.mode:
        link = {"cpu": (1e6, 1e15), "stream": (1e15, 1e6)}[args.mode]
        gpus = tuple(type(g)(**{**g.__dict__, "h2d_bytes_s": link[0], "host_read_bytes_s": link[1]}) for g in machine.gpus)
        machine = type(machine)(**{**machine.__dict__, "gpus": gpus})
    limits = {}
    if args.card_gib:
        card = int(args.card_gib * 2**30)
        limits = dict(reserve_bytes=K.default_reserve(card), max_vram_bytes=card - K.CUDA_CONTEXT_BYTES - K.default_reserve(card))
    plan = plan_memory(config, Job(args.duration), machine, **limits)
    print(f"plan: {args.shape} {plan.lm_dtype}, {len(plan.offload.cpu_layers)} layers in RAM ({plan.offload.mode}), "
          f"EnCodec on {plan.codec_device}, predicted peak VRAM {plan.estimates.peak_vram_bytes.get(0, 0) / 2**30:.2f} GiB, "
          f"predicted {1 / plan.estimates.step_time_s:.1f} steps/s")

    with torch.device(device):
        model = build_model(ModelSpec(shape=args.shape), dtype=getattr(torch, plan.lm_dtype))
    place_by_plan(model, plan, device_of=lambda index: device)
    folder = Path(tempfile.mkdtemp())
    build_tokenizer(folder)
    from transformers import AutoTokenizer

    loaded = LoadedModel(model, AutoTokenizer.from_pretrained(folder), model.config, plan, 0.0)
    mg = MusicGen(loaded, None, folder)
    mg.generate("warm-up", GenerateSettings(duration=0.5, seed=0))
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    result = mg.generate("jazz piano trio", GenerateSettings(duration=args.duration, seed=0))
    measured = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    predicted = plan.estimates.peak_vram_bytes.get(0, 0)
    if args.mode and plan.offload.mode != args.mode:
        print(f"FAIL: planned {plan.offload.mode!r} for the layers in RAM, not {args.mode!r}")
        sys.exit(1)
    print(f"FIGURE {args.shape} {args.duration:g} s {plan.lm_dtype}, {len(plan.offload.cpu_layers)} RAM layers "
          f"({plan.offload.mode or 'none'}): {result.steps_per_s:.1f} steps/s, plan said {1 / plan.estimates.step_time_s:.1f}")
    out = {"shape": args.shape, "dtype": plan.lm_dtype, "ram_layers": len(plan.offload.cpu_layers),
           "mode": plan.offload.mode, "steps_per_s": result.steps_per_s,
           "predicted_steps_per_s": 1 / plan.estimates.step_time_s, "predicted_vram": predicted,
           "measured_vram": measured, "engine": result.engine}
    print(f"decode: {result.steps_per_s:.1f} steps/s ({result.engine} engine)")
    if measured:
        reserved = torch.cuda.max_memory_reserved(device)
        free, total = torch.cuda.mem_get_info(device)
        context = total - free - torch.cuda.memory_reserved(device)  # the CUDA context and any other process
        print(f"peak VRAM: predicted {predicted / 2**30:.2f} GiB, measured {measured / 2**30:.2f} GiB "
              f"(max_memory_allocated): predicted/measured {predicted / measured:.2f}")
        print(f"FIGURE VRAM predicted {predicted / 2**30:.2f} GiB, allocated {measured / 2**30:.2f} "
              f"({predicted / measured:.2f}x), reserved {reserved / 2**30:.2f}, context {context / 2**30:.2f} "
              f"(plan: {K.CUDA_CONTEXT_BYTES / 2**30:.2f})")
        out.update(vram_ratio=predicted / measured, reserved=reserved, context=context)
        if abs(predicted - measured) > args.tolerance * measured:
            print(f"FAIL: predicted peak VRAM {predicted / 2**30:.2f} GiB is off the measured "
                  f"{measured / 2**30:.2f} GiB by more than {100 * args.tolerance:.0f} %")
            sys.exit(1)
    if plan.offload.cpu_layers:
        layers = model.decoder.model.decoder.layers
        streamed = sum(t.numel() * t.element_size() for i in plan.offload.cpu_layers for _, _, t in _per_step_tensors(layers[i]))
        link = machine.gpus[0].h2d_bytes_s
        print(f"RAM layers: {streamed / 2**30:.2f} GiB read per step; measured pinned H2D "
              f"{(link or 0) / 1e9:.1f} GB/s")
        if link and plan.offload.mode == "stream":
            bound = link / streamed
            print(f"copy bound {bound:.2f} steps/s; measured {result.steps_per_s:.2f} steps/s: "
                  f"{bound / result.steps_per_s:.2f}x of the bound (target <= 1.3)")
            print(f"FIGURE streamed {streamed / 2**30:.2f} GiB/step at {link / 1e9:.1f} GB/s: {bound / result.steps_per_s:.2f}x the copy bound")
            out.update(streamed_bytes=streamed, h2d=link, bound_ratio=bound / result.steps_per_s)
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
