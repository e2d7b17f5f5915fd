"""Load a model folder exactly as a Plan says: placement, dtypes, offload, int8.

The model is read on the CPU (weights memory-mapped from the safetensors file) and placed by
the loader itself: embeddings, heads and resident decoder layers on their GPU, the plan's RAM
layers as real pinned host tensors (no meta weights, no accelerate hooks), so the fast loop
runs every plan the way the plan chose (`decode.offload.Placement`). T5 stays on the CPU in
float32 read from the file; its output is cast to the LM's dtype at the projections.
Only disk offload and int8 on a GPU (bitsandbytes) go through accelerate's dispatch.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

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


def cuda_device(index: int):
    """GPU `index` of a plan as a torch device (tests pass a CPU stand-in instead)."""
    import torch

    return torch.device("cuda", index)


def load_by_plan(folder: Path, plan: Plan, *, reporter: Reporter | None = None,
               device_of: Callable[[int], Any] = cuda_device) -> LoadedModel:
    """The model in `folder` placed by `plan`, with its tokenizer. `device_of` maps the plan's
    GPU indices to torch devices."""
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from musicgen_cli.arch import model_class, quiet_transformers

    reporter = reporter or NullReporter()
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise MgenError(f"{folder} has no config.json", "download or import the model first (mgen models)")
    if plan.uses_gpu and device_of is cuda_device and not torch.cuda.is_available():
        raise MgenError("the plan places the model on a GPU this machine does not have",
                        "plan for it with mgen memory plan --gpu-mem, and generate without --gpu-mem here")
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
    bnb = plan.quantize == "int8" and plan.uses_gpu
    if disk or bnb:
        kwargs["device_map"] = {k: (device_of(v) if isinstance(v, int) else v) for k, v in plan.device_map.items()}
        kwargs["max_memory"] = {k: v for k, v in plan.max_memory.items() if k in set(plan.device_map.values())}
        if disk:
            kwargs["offload_folder"] = str(offload_folder(folder))
            reporter.message(f"offloading {len(plan.offload.disk_layers)} decoder layers to disk: slow", "warning")
    if bnb:
        kwargs["quantization_config"] = _bnb_int8()
    with quiet_transformers():  # the loading bar and config notes are ours to show
        model = model_class(config).from_pretrained(folder, **kwargs)
    model.eval()
    if disk or bnb:
        _run_on_cpu(model.text_encoder)
        if plan.codec_device == "cpu":
            _run_on_cpu(model.audio_encoder)
    if plan.text_encoder_dtype != plan.lm_dtype:
        _text_encoder_from_file(model, folder, getattr(torch, plan.text_encoder_dtype))
    if disk or bnb:
        _cast_at_projections(model)
        if plan.codec_device == "cpu":
            model.audio_encoder.to(getattr(torch, plan.codec_dtype))
    else:
        place_by_plan(model, plan, device_of)
        pageable = getattr(getattr(model, "mgen_placement", None), "pageable_bytes", 0)
        if pageable:
            reporter.message(f"the OS refused to pin {pageable / 2**20:.0f} MiB of decoder layers kept in RAM: they copy "
                             "to the GPU from pageable memory, more slowly than planned", "warning")
    if plan.quantize and not plan.uses_gpu:
        from musicgen_cli.engine.quantize import apply_kernel
        from musicgen_cli.planning.cpu_modes import kernel_for

        apply_kernel(model, plan.cpu_kernel or kernel_for(None, plan.quantize, plan.lm_dtype))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    seconds = time.perf_counter() - start
    reporter.message(f"loaded {folder.name} in {seconds:.1f} s")
    return LoadedModel(model=model, tokenizer=tokenizer, config=config, plan=plan, load_seconds=seconds)


def place_by_plan(model, plan: Plan, device_of: Callable[[int], Any] = cuda_device) -> None:
    """Put a model already in memory where `plan` says (also for benchmarks that build models
    in memory): T5 on the CPU in its dtype, every device-map entry on its device, RAM layers of
    a GPU plan pinned, EnCodec on its device in its dtype, the placement recorded on the model."""
    import torch

    model.text_encoder.to(device="cpu", dtype=getattr(torch, plan.text_encoder_dtype))
    _cast_at_projections(model)
    _place(model, plan, device_of)
    if plan.codec_device == "cpu":
        model.audio_encoder.to(device="cpu", dtype=getattr(torch, plan.codec_dtype))


def _place(model, plan: Plan, device_of: Callable[[int], Any]) -> None:
    """Every device-map entry where the plan put it; RAM layers of a GPU plan pinned."""
    import torch

    from musicgen_cli.decode.offload import Placement, to_host

    def device(value):
        return device_of(value) if isinstance(value, int) else torch.device("cpu")

    ram = set(plan.offload.cpu_layers) if plan.uses_gpu else set()
    pageable = 0
    for key, value in plan.device_map.items():
        if key in ("text_encoder", "audio_encoder"):
            continue
        module = model.get_submodule(key)
        index = int(key.rsplit(".", 1)[1]) if key.startswith("decoder.model.decoder.layers.") else None
        if index in ram:
            pageable += to_host(module)
        else:
            module.to(device(value))
    if isinstance(plan.codec_device, int):
        model.audio_encoder.to(device=device(plan.codec_device), dtype=getattr(torch, plan.codec_dtype))
    if plan.uses_gpu:
        model.mgen_placement = Placement(main=device(plan.lm_device), ram_layers=sorted(ram),
                                         mode=plan.offload.mode if ram else None, pageable_bytes=pageable)


def _text_encoder_from_file(model, folder: Path, dtype) -> None:
    """T5 in `dtype` (float32) with its weights read from the file at that precision, not
    rounded through the LM's half precision on the way."""
    from safetensors import safe_open

    encoder = model.text_encoder
    encoder.to(dtype)
    prefix = "text_encoder."
    state = {}
    for path in sorted(folder.glob("model*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                if key.startswith(prefix):
                    state[key[len(prefix):]] = f.get_tensor(key).to(dtype)
    if state:
        encoder.load_state_dict(state, strict=False)


def _cast_at_projections(model) -> None:
    """T5 (and the chroma) arrive in float32 on the CPU: the projections into the LM take them
    in their own dtype and device and hand the result back where the input was, as the
    reference engine multiplies it by the CPU attention mask next."""
    for name in ("enc_to_dec_proj", "audio_enc_to_dec_proj"):
        module = getattr(model, name, None)
        if module is not None and not getattr(module, "_mgen_cast", False):
            module.register_forward_pre_hook(_cast_in)
            module.register_forward_hook(_back_out)
            module._mgen_cast = True


def _cast_in(module, args):
    weight = module.weight
    module._mgen_input_device = args[0].device
    return (args[0].to(device=weight.device, dtype=weight.dtype), *args[1:])


def _back_out(module, args, output):
    return output.to(module.__dict__.pop("_mgen_input_device", output.device))


def release(model) -> None:
    """Free a model now, not whenever the cycle collector runs: accelerate's hooks and the
    modules they wrap reference each other, so dropping the last name frees nothing."""
    import torch
    from accelerate.hooks import remove_hook_from_module

    if model is not None:
        remove_hook_from_module(model, recurse=True)
        model.__dict__.pop("mgen_placement", None)
        for module in model.modules():
            module._parameters.clear()
            module._buffers.clear()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


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
