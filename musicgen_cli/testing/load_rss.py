"""The peak host RSS a load by a plan adds, measured in a fresh process (tests, benchmarks):

    python -m musicgen_cli.testing.load_rss PLAN.json FOLDER [--from-pretrained]

The plan's GPUs are the meta device: GPU-bound tensors are read from the file and dropped, so
only the host's share of the load is measured and no GPU is needed. The process first imports
what a load uses and loads the tokenizer (the plan counts those as the runtime, apart from the
weights), then resets the kernel's high-water mark (/proc/self/clear_refs, Linux) and loads.
It prints one JSON line: RSS before, the peak during the load, and the plan's host figure.
`--from-pretrained` loads as mgen did before streaming: the whole model built on the host by
`from_pretrained` (memory-mapped), T5 read again in float32, then placed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan", type=Path)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--from-pretrained", action="store_true")
    args = parser.parse_args(argv)

    import accelerate  # noqa: F401  (imported by the load: part of the runtime, not of the load)
    import torch
    import transformers.conversion_mapping  # noqa: F401
    import transformers.models.encodec.modeling_encodec  # noqa: F401
    import transformers.models.t5.modeling_t5  # noqa: F401
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig  # noqa: F401

    from musicgen_cli.arch import model_class
    from musicgen_cli.engine import loader
    from musicgen_cli.planning.planner import Plan

    plan = Plan.from_json(json.loads(args.plan.read_text()))
    config = AutoConfig.from_pretrained(args.folder)
    model_class(config)
    AutoTokenizer.from_pretrained(args.folder)
    meta = torch.device("meta")

    before = _status_bytes("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM starts again from the current RSS
    if args.from_pretrained:
        model = model_class(config).from_pretrained(args.folder, dtype=getattr(torch, plan.lm_dtype))
        loader._text_encoder_from_file(model, args.folder, getattr(torch, plan.text_encoder_dtype))
        # A copy to a GPU reads every tensor (its memory-mapped pages come into RSS); a move to
        # the meta device would not, so read each one here as that copy would.
        for tensor in model.state_dict().values():
            tensor.sum()
        loader.place_by_plan(model, plan, lambda i: meta)
    else:
        model = loader.load_by_plan(args.folder, plan, device_of=lambda i: meta).model
    peak = _status_bytes("VmHWM")
    on_host = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()] if t.device.type == "cpu")
    print(json.dumps({"before": before, "peak": peak, "growth": peak - before, "host_weight_bytes": plan.host_weight_bytes,
                      "host_tensor_bytes": on_host}))


if __name__ == "__main__":
    main()
