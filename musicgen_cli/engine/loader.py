"""Load a model folder exactly as a Plan says: device map, dtypes, offload, int8.

A plan that keeps everything on the CPU loads with a plain `from_pretrained` (no accelerate
hooks, weights memory-mapped from the safetensors file). A plan with GPUs goes through
accelerate's dispatch, then the T5 text encoder (and EnCodec when the plan says CPU) are
made ordinary CPU modules again, so they run where their weights are instead of being
copied to the GPU on every call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from musicgen_cli.errors import MgenError
from musicgen_cli.events import NullReporter, Reporter
from musicgen_cli.planning.planner import Plan


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    config: Any
    plan: Plan
    load_seconds: float


def offload_folder(folder: Path) -> Path:
    """Where disk-offloaded weights go: beside the model, one folder per model."""
    return Path(folder).parent / ".mgen-offload" / Path(folder).name


def load_model(folder: Path, plan: Plan, *, reporter: Reporter | None = None) -> LoadedModel:
    """The model in `folder` placed by `plan`, with its tokenizer."""
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from musicgen_cli.arch import model_class, quiet_transformers

    reporter = reporter or NullReporter()
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise MgenError(f"{folder} has no config.json", "download or import the model first (mgen models)")
    start = time.perf_counter()
    where = "CPU" if not plan.uses_gpu else ", ".join(sorted({_device_name(d) for d in plan.device_map.values()}))
    what = plan.cpu_kernel or f"{plan.lm_dtype}{' ' + plan.quantize if plan.quantize else ''}"
    reporter.phase("load", f"{folder.name}: {what} on {where}")
    config = AutoConfig.from_pretrained(folder)
    if config.model_type != plan.model_type:
        raise MgenError(f"the plan is for a {plan.model_type} model, {folder.name} is {config.model_type}", "plan again for this model")
    dtype = getattr(torch, plan.lm_dtype)
    kwargs: dict[str, Any] = {"dtype": dtype}
    disk = "disk" in plan.device_map.values()
    if plan.uses_gpu or disk:
        kwargs["device_map"] = dict(plan.device_map)
        kwargs["max_memory"] = {k: v for k, v in plan.max_memory.items() if k in set(plan.device_map.values())}
        if disk:
            kwargs["offload_folder"] = str(offload_folder(folder))
            reporter.message(f"offloading {len(plan.offload.disk_layers)} decoder layers to disk: slow", "warning")
    if plan.quantize == "int8" and plan.uses_gpu:
        kwargs["quantization_config"] = _bnb_int8()
    with quiet_transformers():  # the loading bar and config notes are ours to show
        model = model_class(config).from_pretrained(folder, **kwargs)
    model.eval()
    if plan.uses_gpu or disk:
        _run_on_cpu(model.text_encoder)
        if plan.codec_device == "cpu":
            _run_on_cpu(model.audio_encoder)
    model.text_encoder.to(getattr(torch, plan.text_encoder_dtype))
    if plan.codec_device == "cpu":
        model.audio_encoder.to(getattr(torch, plan.codec_dtype))
    if plan.quantize and not plan.uses_gpu:
        from musicgen_cli.engine.quantize import apply_kernel
        from musicgen_cli.planning.cpu_modes import kernel_for

        apply_kernel(model, plan.cpu_kernel or kernel_for(None, plan.quantize, plan.lm_dtype))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    seconds = time.perf_counter() - start
    reporter.message(f"loaded {folder.name} in {seconds:.1f} s")
    return LoadedModel(model=model, tokenizer=tokenizer, config=config, plan=plan, load_seconds=seconds)


def _device_name(device: int | str) -> str:
    return f"GPU {device}" if isinstance(device, int) else str(device).upper()


def _run_on_cpu(root) -> None:
    """Turn an accelerate-offloaded module back into a plain CPU module.

    dispatch_model treats "cpu" entries of a GPU device map as offloaded: their weights move to
    a side map and the module runs on the GPU. Materialise them from that map and drop the hooks.
    """
    from accelerate.hooks import remove_hook_from_module
    from accelerate.utils import set_module_tensor_to_device

    for module in root.modules():
        hook = getattr(module, "_hf_hook", None)
        for h in getattr(hook, "hooks", None) or ([hook] if hook is not None else []):
            weights = getattr(h, "weights_map", None)
            if weights is None or not getattr(h, "offload", False):
                continue
            tensors = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
            for name, tensor in tensors:
                if tensor.device.type == "meta":
                    set_module_tensor_to_device(module, name, "cpu", value=weights[name])
    remove_hook_from_module(root, recurse=True)
    root.to("cpu")


def _bnb_int8():
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise MgenError("int8 on a GPU needs bitsandbytes", "pip install bitsandbytes, or plan without --quantize") from None
    from transformers import BitsAndBytesConfig

    keep = ["text_encoder", "audio_encoder", "enc_to_dec_proj", "audio_enc_to_dec_proj", "lm_heads", "embed_tokens"]
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=keep, llm_int8_enable_fp32_cpu_offload=True)
