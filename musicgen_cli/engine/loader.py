"""Load a model folder exactly as a Plan says: placement, dtypes, offload, int8.

A GPU plan is read from the file tensor by tensor straight where the plan puts each one
(`engine.streaming`): embeddings, heads and resident decoder layers onto their GPU, the plan's
RAM layers into page-locked host blocks of exactly their size, T5 on the CPU in float32 as
stored; the host never holds more of the model than the plan counts there. No meta weights and
no accelerate hooks remain, so the fast loop runs every plan the way the plan chose
(`decode.offload.Placement`). T5's output is cast to the LM's dtype at the projections.
A CPU plan holds the whole model on the host anyway and loads with `from_pretrained`; only
disk offload and int8 on a GPU (bitsandbytes) go through accelerate's dispatch.
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
    disk = "disk" in plan.device_map.values()
    bnb = plan.quantize == "int8" and plan.uses_gpu
    if plan.uses_gpu and not (disk or bnb):
        model, pageable = _stream_by_plan(folder, config, plan, device_of)
        if pageable:
            reporter.message(f"the OS refused to pin {pageable / 2**20:.0f} MiB of decoder layers kept in RAM: they copy "
                             "to the GPU from pageable memory, more slowly than planned", "warning")
    else:
        model = _from_pretrained(folder, config, plan, device_of, disk, bnb, reporter)
    if plan.quantize and not plan.uses_gpu:
        from musicgen_cli.engine.quantize import apply_kernel
        from musicgen_cli.planning.cpu_modes import kernel_for

        apply_kernel(model, plan.cpu_kernel or kernel_for(None, plan.quantize, plan.lm_dtype))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    seconds = time.perf_counter() - start
    reporter.message(f"loaded {folder.name} in {seconds:.1f} s")
    return LoadedModel(model=model, tokenizer=tokenizer, config=config, plan=plan, load_seconds=seconds)


def _from_pretrained(folder: Path, config, plan: Plan, device_of: Callable[[int], Any], disk: bool, bnb: bool, reporter: Reporter):
    """A CPU plan (the whole model belongs on the host), or a plan only accelerate's dispatch
    loads (layers on disk, int8 on a GPU)."""
    import torch

    from musicgen_cli.arch import model_class, quiet_transformers

    kwargs: dict[str, Any] = {"dtype": getattr(torch, plan.lm_dtype)}
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
    return model


def _stream_by_plan(folder: Path, config, plan: Plan, device_of: Callable[[int], Any]):
    """A GPU plan's model read from the file tensor by tensor straight where the plan puts it
    (engine.streaming): (the model, bytes of RAM layers left pageable because locking was refused)."""
    import torch
    from transformers import GenerationConfig

    from musicgen_cli.decode.offload import host_views
    from musicgen_cli.engine.streaming import Target, empty_model, model_names, stored_tensors, stream_weights

    model = empty_model(config)
    keys = sorted(plan.device_map, key=len, reverse=True)  # the most specific entry names a tensor's place
    ram = {f"decoder.model.decoder.layers.{i}" for i in plan.offload.cpu_layers}
    blocks: dict[str, dict[str, torch.Tensor]] = {}
    pageable = 0

    def device(value):
        return device_of(value) if isinstance(value, int) else torch.device("cpu")

    def target_of(name: str, skeleton: torch.Tensor) -> Target | None:
        nonlocal pageable
        if tied.get(name) in in_file:
            return None  # a tied copy (T5's encoder token table, 94 MiB in float32) is the one already read
        key = next(k for k in keys if name.startswith(f"{k}."))
        if key == "text_encoder":
            place, dtype = torch.device(plan.text_encoder_device), plan.text_encoder_dtype
        elif key == "audio_encoder":
            place, dtype = device(plan.codec_device), plan.codec_dtype
        else:
            place, dtype = device(plan.device_map[key]), plan.lm_dtype
        dtype = getattr(torch, dtype) if skeleton.is_floating_point() else skeleton.dtype
        if key not in ram:
            return Target(place, dtype)
        if key not in blocks:
            # One block per RAM layer, allocated when its first tensor arrives: exactly the
            # layer's bytes in the plan's dtype, which is what the plan counts in RAM.
            layer = model.get_submodule(key)
            named = [*layer.named_parameters(), *layer.named_buffers()]
            views, locked = host_views([(tuple(t.shape), dtype if t.is_floating_point() else t.dtype) for _, t in named])
            blocks[key] = {f"{key}.{n}": v for (n, _), v in zip(named, views)}
            pageable += 0 if locked or not torch.cuda.is_available() else sum(v.numel() * v.element_size() for v in views)
        return Target(place, dtype, blocks[key][name])

    # Buffers the file does not hold (the sinusoidal positions, EnCodec's conv geometry) are
    # made where they belong and computed there by transformers' own initialiser, as
    # from_pretrained computes them: built on the host at init instead, they would stay in the
    # allocator's heap through the load (16 MiB for small).
    stored = stored_tensors(folder)
    in_file = set(model_names(model, stored).values())
    tied = model.all_tied_weights_keys
    for name, buffer in list(model.named_buffers()):
        if name not in in_file:
            module_name, _, leaf = name.rpartition(".")
            module = model.get_submodule(module_name)
            target = target_of(name, buffer)
            module._buffers[leaf] = target.view if target.view is not None else torch.empty(buffer.shape, dtype=target.dtype, device=target.device)
            _owner(model, module_name)._init_weights(module)
    read = stream_weights(model, folder, target_of, stored)
    loaded = {id(p) for n, p in model.named_parameters() if n in read}
    missing = {n for n, _ in model.named_parameters(remove_duplicate=False) if n not in read}
    # As from_pretrained does: the tied copy (T5's encoder token table) becomes the one read.
    model.tie_weights(missing_keys=missing, recompute_mapping=False)
    absent = sorted(n for n, p in model.named_parameters(remove_duplicate=False) if id(p) not in loaded)
    if absent:
        raise MgenError(f"{folder.name}'s weights lack {', '.join(absent[:3])}{' …' if len(absent) > 3 else ''}",
                        "download or import the model again (mgen models)")
    model.eval()
    try:
        model.generation_config = GenerationConfig.from_pretrained(folder)
    except OSError:
        pass  # no generation_config.json: the one derived from config.json, as from_pretrained keeps
    _cast_at_projections(model)
    model.mgen_placement = _placement(plan, device, pageable)
    return model, pageable


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

    from musicgen_cli.decode.offload import to_host

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
        model.mgen_placement = _placement(plan, device, pageable)


def _owner(model, module_name: str):
    """The innermost transformers model holding a module: the one whose initialiser knows it."""
    from transformers import PreTrainedModel

    parts = module_name.split(".")
    for n in range(len(parts), -1, -1):
        found = model.get_submodule(".".join(parts[:n]))
        if isinstance(found, PreTrainedModel):
            return found
    return model


def _placement(plan: Plan, device: Callable[[int | str], Any], pageable: int):
    from musicgen_cli.decode.offload import Placement

    ram = sorted(plan.offload.cpu_layers)
    return Placement(main=device(plan.lm_device), ram_layers=ram, mode=plan.offload.mode if ram else None,
                     pageable_bytes=pageable)


def _text_encoder_from_file(model, folder: Path, dtype) -> None:
    """T5 in `dtype` (float32) with its weights read from the file at that precision, not
    rounded through the LM's half precision on the way: read again in place, tensor by tensor."""
    import torch

    from musicgen_cli.engine.streaming import Target, stream_weights

    model.text_encoder.to(dtype)
    cpu = torch.device("cpu")
    stream_weights(model, folder, lambda name, tensor: Target(cpu, dtype, tensor.data) if name.startswith("text_encoder.") else None)


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
