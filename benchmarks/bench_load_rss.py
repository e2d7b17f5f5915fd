"""Peak host RSS of a GPU-plan load against the plan's host figure: streaming vs from_pretrained.

    PYTHONPATH=. python benchmarks/bench_load_rss.py --work /tmp/mgen-bench [--shape small]

Writes a shape-faithful random model in bfloat16 under --work (once; medium's weights are
arbitrary bytes in the real layout, written without building the model, which would take
~11 GB of RAM: a load's memory does not depend on the values), plans it for a simulated
8 GiB GPU (everything on the GPU; then with EnCodec and the last decoder layers in RAM), and
loads each plan in a fresh process both ways (musicgen_cli.testing.load_rss: the meta device
stands for the GPU, so only the host's share is real). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoConfig

from musicgen_cli.planning.hardware import probe, simulate
from musicgen_cli.planning.planner import Job, plan_memory
from musicgen_cli.planning.sizing import model_sizes
from musicgen_cli.testing import ModelSpec, write_model_folder
from musicgen_cli.testing.ledger import max_vram_for

GiB, MiB = 2**30, 2**20


def plans(folder: Path):
    config = AutoConfig.from_pretrained(folder)
    machine = simulate(probe(), gpu_mem=[8 * GiB], ram=32 * GiB)
    yield "all on the GPU", plan_memory(config, Job(1), machine)
    os.environ["FORCE_CPU_COMP"] = "1"  # read by the planner: EnCodec on the CPU
    try:
        whole = plan_memory(config, Job(1), machine)
        w = model_sizes(config).layer_bytes(whole.lm_dtype)
        yield "layers and EnCodec in RAM", plan_memory(config, Job(1), machine, reserve_bytes=0,
                                                       max_vram_bytes=max_vram_for(whole.estimates.peak_vram_bytes[0] - 8 * w))
    finally:
        del os.environ["FORCE_CPU_COMP"]


def write_arbitrary_weights(folder: Path, shape: str) -> None:
    """A folder whose model.safetensors has every tensor of `shape` in bfloat16 (integer
    buffers in their own dtype) filled with one repeated block of random bytes."""
    import numpy as np

    from musicgen_cli.arch import build_config
    from musicgen_cli.engine.streaming import empty_model

    write_model_folder(folder, ModelSpec())  # tokenizer, generation and preprocessor configs
    config = build_config(shape)
    config.save_pretrained(folder)
    names = {torch.bfloat16: "BF16", torch.int64: "I64", torch.bool: "BOOL", torch.float32: "F32"}
    header, offset, tensors = {}, 0, []
    model = empty_model(config)
    for name, tensor in model.state_dict().items():
        if name in model.all_tied_weights_keys:
            continue  # stored once, as save_pretrained stores tied weights
        dtype = torch.bfloat16 if tensor.is_floating_point() else tensor.dtype
        nbytes = tensor.numel() * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": names[dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + nbytes]}
        tensors.append(nbytes)
        offset += nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    block = np.random.default_rng(0).integers(0, 255, 2**20, dtype=np.uint8).tobytes()
    with open(folder / "model.safetensors", "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for nbytes in tensors:
            for start in range(0, nbytes, len(block)):
                f.write(block[: min(len(block), nbytes - start)])


def measure(plan, folder: Path, work: Path, whole: bool) -> dict:
    path = work / "plan.json"
    path.write_text(json.dumps(plan.to_json()))
    command = [sys.executable, "-m", "musicgen_cli.testing.load_rss", str(path), str(folder)] + (["--from-pretrained"] if whole else [])
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--shape", action="append", choices=["small", "medium"])
    args = parser.parse_args()
    print("| shape | plan | host figure | streaming peak growth | ratio | from_pretrained peak growth | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for shape in args.shape or ["small"]:
        folder = args.work / f"{shape}-bf16"
        if not (folder / "model.safetensors").is_file():
            if shape == "small":
                write_model_folder(folder, ModelSpec(shape=shape), dtype=torch.bfloat16)
            else:
                write_arbitrary_weights(folder, shape)
        for name, plan in plans(folder):
            host = plan.host_weight_bytes
            stream, old = measure(plan, folder, args.work, False), measure(plan, folder, args.work, True)
            print(f"| {shape} | {name} ({len(plan.offload.cpu_layers)} RAM layers) | {host / MiB:.0f} MiB "
                  f"| {stream['growth'] / MiB:.0f} MiB | {stream['growth'] / host:.3f} "
                  f"| {old['growth'] / MiB:.0f} MiB | {old['growth'] / host:.3f} |", flush=True)


if __name__ == "__main__":
    main()
