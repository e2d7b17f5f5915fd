"""A VRAM ledger the CPU can check: a GPU plan run on a stand-in device, its live bytes counted.

The meta device stands in for every GPU of the plan: tensors there have shapes, dtypes and
storages but no data, so the released shapes (large at 30 s included) run in seconds of
bookkeeping, not hours of arithmetic. Host tensors (T5 in float32, the RAM layers of an
offloaded plan, inputs, the codes read back) are real CPU tensors and are not counted.

`VramLedger` is a `TorchDispatchMode`: after every operator it looks at the outputs on the
stand-in device and counts each storage once (views share one), at the size the CUDA caching
allocator would hand out (blocks of 512 bytes), and takes it off the books when the storage
dies (a finalizer on the storage's Python object, which torch keeps for as long as the storage
lives). The peak is the most bytes ever live at once: what `torch.cuda.max_memory_allocated`
reports on a GPU, fragmentation and workspaces aside (the plan's reserve holds those).

Small stand-in tensors (at most SHADOWED elements: EnCodec's strides and paddings, positions,
flags) carry their values in a host shadow computed beside them, so arithmetic on shapes stays
right. Reading any other stand-in value back (`.cpu()`, `.item()`) gives zeros: the codes the
loop returns, the audio EnCodec decodes and the sampler's "no bad step" all read as 0, so the
product runs unchanged from placement to the decoded clip, without a branch of its own for the ledger.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

STAND_IN = torch.device("meta")
# The CUDA caching allocator rounds every request up to a multiple of 512 bytes (kMinBlockSize).
BLOCK = 512

# Stand-in tensors up to this many elements keep their values in a host shadow.
SHADOWED = 64

aten = torch.ops.aten


def allocator_bytes(nbytes: int) -> int:
    """What the caching allocator hands out for a request of `nbytes`."""
    return -(-nbytes // BLOCK) * BLOCK


class VramLedger(TorchDispatchMode):
    """Live and peak bytes of the storages on the stand-in device, per phase as well."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.phase = "load"
        self.phase_peaks: dict[str, int] = {}
        self._sizes: dict[int, int] = {}  # id of a live storage -> the bytes counted for it
        self._shapes = _ShapeCache()

    def enter_phase(self, name: str) -> None:
        self.phase = name
        self.phase_peaks[name] = max(self.phase_peaks.get(name, 0), self.live)

    def _free(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)

    def _count(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key, size = id(storage), allocator_bytes(storage.nbytes())
        known = self._sizes.get(key)
        if known is None:
            weakref.finalize(storage, self._free, key)
        elif known == size:
            return
        self._sizes[key] = size
        self.live += size - (known or 0)
        if self.live > self.peak:
            self.peak = self.live
        if self.live > self.phase_peaks.get(self.phase, 0):
            self.phase_peaks[self.phase] = self.live

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket in _READS:
            read = _read_back(func, args, kwargs)
            if read is not None:
                return read
        out = self._shapes.run(func, args, kwargs)
        stand_in = [leaf for leaf in _outputs(out) if isinstance(leaf, torch.Tensor) and leaf.is_meta]
        for leaf in stand_in:
            self._count(leaf)
        if stand_in and all(leaf.numel() <= SHADOWED for leaf in stand_in):
            _shadow(func, args, kwargs, out)
        return out


def _outputs(out) -> list:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _inputs(args, kwargs) -> tuple[list, tuple]:
    """The arguments as one flat list (lists of tensors or sizes opened one level) and their layout."""
    flat, layout = [], []
    for value in (*args, *kwargs.values()):
        if isinstance(value, (list, tuple)):
            flat.extend(value)
            layout.append(len(value))
        else:
            flat.append(value)
            layout.append(-1)
    return flat, (tuple(layout), tuple(kwargs))


_PLAIN = (int, float, bool, str, type(None), torch.dtype, torch.device, torch.layout, torch.memory_format)


class _ShapeCache:
    """Operators on stand-in tensors answered from what the same operator did before on inputs
    of the same shapes, strides, dtypes and aliasing: many of torch's meta kernels are Python
    reference implementations (a millisecond an op), and a decode step repeats the last one's
    operators on the same shapes, but for the attention over one more position."""

    def __init__(self) -> None:
        self.known: dict = {}

    def run(self, func, args, kwargs):
        flat, layout = _inputs(args, kwargs)
        key = self._key(func, flat, layout)
        recipe = self.known.get(key) if key is not None else None
        if recipe is not None:
            many, parts = recipe
            made = [self._make(part, flat) for part in parts]
            return many(made) if many else made[0]
        out = func(*args, **kwargs)
        if key is not None:
            parts = [self._recipe(leaf, flat) for leaf in _outputs(out)]
            if all(part is not None for part in parts):
                self.known[key] = (type(out) if isinstance(out, (tuple, list)) else None, parts)
        return out

    @staticmethod
    def _key(func, flat, layout):
        """What decides the outputs' shapes, or None when not only stand-in tensors take part."""
        parts = [func, layout]
        storages: list[int] = []
        for leaf in flat:
            if isinstance(leaf, torch.Tensor):
                if not leaf.is_meta:
                    return None
                storage = leaf.untyped_storage()
                if id(storage) not in storages:
                    storages.append(id(storage))
                parts.append((leaf.dtype, tuple(leaf.shape), leaf.stride(), leaf.storage_offset(),
                              storages.index(id(storage)), storage.nbytes()))
            elif isinstance(leaf, _PLAIN):
                parts.append((type(leaf), leaf))
            else:
                return None
        return tuple(parts)

    @staticmethod
    def _recipe(leaf, flat):
        """How to make `leaf` again for inputs like `flat`: an input itself, a view of one, a new tensor."""
        if not isinstance(leaf, torch.Tensor):
            return ("value", leaf) if isinstance(leaf, (int, float, bool, type(None))) else None
        if not leaf.is_meta:
            return None
        for i, arg in enumerate(flat):
            if arg is leaf:
                return ("input", i)
        for i, arg in enumerate(flat):
            if isinstance(arg, torch.Tensor) and arg.untyped_storage() is leaf.untyped_storage():
                return ("view", i, tuple(leaf.shape), leaf.stride(), leaf.storage_offset(), leaf.dtype)
        return ("new", tuple(leaf.shape), leaf.stride(), leaf.dtype, leaf.untyped_storage().nbytes())

    @staticmethod
    def _make(part, flat):
        kind = part[0]
        if kind == "value":
            return part[1]
        if kind == "input":
            return flat[part[1]]
        if kind == "view":
            _, i, shape, stride, offset, dtype = part
            base = flat[i] if flat[i].dtype == dtype else flat[i].view(dtype)
            return base.as_strided(shape, stride, offset)
        _, shape, stride, dtype, nbytes = part
        made = torch.empty_strided(shape, stride, dtype=dtype, device=STAND_IN)
        if made.untyped_storage().nbytes() != nbytes:
            made.untyped_storage().resize_(nbytes)
        return made


def _on_stand_in(tensor: torch.Tensor) -> bool:
    return tensor.is_meta


def _host(value):
    """`value` with stand-in tensors replaced by their shadows and devices by the host's
    (None for a stand-in tensor without a shadow)."""
    if isinstance(value, torch.Tensor) and _on_stand_in(value):
        return getattr(value, "_ledger_shadow", None)
    if isinstance(value, torch.device) and value.type == STAND_IN.type:
        return torch.device("cpu")
    if isinstance(value, (list, tuple)):
        return type(value)(_host(v) for v in value)
    return value


def _has_all_shadows(value) -> bool:
    if isinstance(value, torch.Tensor):
        return not _on_stand_in(value) or hasattr(value, "_ledger_shadow")
    if isinstance(value, (list, tuple)):
        return all(_has_all_shadows(v) for v in value)
    return True


def _shadow(func, args, kwargs, out) -> None:
    """Run `func` on the host shadows of its inputs and keep the result beside `out` (in-place
    ops and views of a shadowed tensor update or view its shadow, as they do the tensor)."""
    if not (_has_all_shadows(list(args)) and _has_all_shadows(list(kwargs.values()))):
        return
    try:
        host = func(*_host(list(args)), **{k: _host(v) for k, v in kwargs.items()})
    except (RuntimeError, TypeError, ValueError):
        return
    for leaf, value in zip(tree_leaves(out), tree_leaves(host)):
        if isinstance(leaf, torch.Tensor) and _on_stand_in(leaf) and isinstance(value, torch.Tensor):
            leaf._ledger_shadow = value


_READS = {aten.item, aten._local_scalar_dense, aten.is_nonzero, aten.to, aten._to_copy, aten.copy_}


def _read_back(func, args, kwargs):
    """A stand-in value read into the host: its shadow, else zeros of its shape (None: not a read)."""
    if not args or not isinstance(args[0], torch.Tensor):
        return None
    source = args[1] if func is aten.copy_.default else args[0]
    if not (isinstance(source, torch.Tensor) and _on_stand_in(source)):
        return None
    shadow = getattr(source, "_ledger_shadow", None)
    if func.overloadpacket in (aten.item, aten._local_scalar_dense, aten.is_nonzero):
        return (shadow.item() if shadow is not None else 0) if func is not aten.is_nonzero.default else bool(
            shadow.item() if shadow is not None else 0)
    if func.overloadpacket in (aten.to, aten._to_copy):
        rest = [*args[1:], *kwargs.values()]
        device = next((a if isinstance(a, torch.device) else a.device for a in rest
                       if isinstance(a, (torch.device, torch.Tensor))), None)
        dtype = next((a if isinstance(a, torch.dtype) else a.dtype for a in rest
                      if isinstance(a, (torch.dtype, torch.Tensor))), None)
        if device is not None and device.type != STAND_IN.type:
            dtype = dtype or source.dtype
            return shadow.to(device, dtype) if shadow is not None else torch.zeros(source.shape, dtype=dtype, device=device)
    if func is aten.copy_.default and not _on_stand_in(args[0]):
        return args[0].copy_(shadow) if shadow is not None else args[0].zero_()
    return None


class _PhaseReporter:
    """A Reporter that tells the ledger which phase the engine is in."""

    def __init__(self, ledger: VramLedger) -> None:
        self.ledger = ledger

    def phase(self, name: str, detail: str = "") -> None:
        self.ledger.enter_phase(name)

    def progress(self, update) -> None:
        pass

    def message(self, text: str, level: str = "info") -> None:
        pass


def host_model(config, plan):
    """The model of `config` on the host with no memory behind its weights yet: decoder and
    EnCodec uninitialised (pages never touched; placement moves them to the stand-in without
    reading them, and the RAM layers' values are only ever copied), T5 zeroed in float32 (it
    really runs, on the CPU)."""
    from musicgen_cli.planning.sizing import meta_model

    model = meta_model(config)  # buffers (positions, EnCodec's strides) are real already
    model.to(getattr(torch, plan.lm_dtype))
    made: dict[int, torch.nn.Parameter] = {}  # tied weights stay one tensor
    for module in model.modules():
        for name, parameter in module._parameters.items():
            if parameter is not None:
                if id(parameter) not in made:
                    made[id(parameter)] = torch.nn.Parameter(torch.empty_like(parameter, device="cpu"), requires_grad=False)
                module._parameters[name] = made[id(parameter)]
    model.text_encoder.to(torch.float32)
    for tensor in [*model.text_encoder.parameters(), *model.text_encoder.buffers()]:
        tensor.data.zero_()
    return model.eval()


@dataclass
class LedgerRun:
    peak_bytes: int  # the most bytes live on the stand-in at once, from placement to decoded audio
    phase_peaks: dict[str, int] = field(default_factory=dict)  # load, encode text, generate, decode audio
    steps: int = 0
    engine: str = ""
    clips: list = field(default_factory=list)


def run_plan(config, plan, prompt: str, settings, *, prompt_audio=None, tokenizer_dir: Path) -> LedgerRun:
    """Place a model of `config` by `plan` on the stand-in and generate `prompt` with
    `settings` (and `prompt_audio`, a continuation at the model's rate) under the ledger."""
    from transformers import AutoTokenizer

    from musicgen_cli.engine.loader import LoadedModel, place_by_plan
    from musicgen_cli.engine.musicgen import MusicGen
    from musicgen_cli.store.random_models import build_tokenizer

    if not (Path(tokenizer_dir) / "tokenizer.json").is_file():
        build_tokenizer(Path(tokenizer_dir))
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = host_model(config, plan)
    ledger = VramLedger()
    with ledger:
        place_by_plan(model, plan, lambda index: STAND_IN)
        mg = MusicGen(LoadedModel(model, tokenizer, config, plan, 0.0), None, Path(tokenizer_dir), _PhaseReporter(ledger))
        result = mg.generate(prompt, settings, prompt_audio=prompt_audio)
    return LedgerRun(ledger.peak, dict(ledger.phase_peaks), result.steps, result.engine, result.clips)


@dataclass(frozen=True)
class Case:
    """One check of the plan against the ledger: a released shape, a clip, a card."""

    shape: str  # small, medium, large
    duration_s: float
    card_gib: float = 8.0
    prompt_s: float = 0.0  # seconds of audio continued (--continue)
    long_prompt: bool = False  # a prompt of T5's full 512 tokens

    @property
    def name(self) -> str:
        extra = (f", after {self.prompt_s:g} s" if self.prompt_s else "") + (", 512 tokens" if self.long_prompt else "")
        return f"{self.shape} {self.duration_s:g} s on {self.card_gib:g} GiB{extra}"


@dataclass
class Checked:
    case: Case
    planned_bytes: int  # the plan's peak VRAM on GPU 0
    run: LedgerRun
    plan: object

    @property
    def error(self) -> float:
        """The plan's peak against the ledger's, as a fraction of the ledger's (+: planned more)."""
        return self.planned_bytes / self.run.peak_bytes - 1


def check(case: Case, tokenizer_dir: Path) -> Checked:
    """Plan `case` for a simulated card, run it under the ledger, and put the two peaks side by side."""
    import numpy as np

    from musicgen_cli.arch import build_config
    from musicgen_cli.engine.settings import GenerateSettings
    from musicgen_cli.planning.hardware import probe, simulate
    from musicgen_cli.planning.job import Job, text_tokens
    from musicgen_cli.planning.planner import plan_memory

    config = build_config(case.shape, "mono")
    # The offline tokenizer's words are one token each: 600 of them fill T5's 512.
    prompt = "jazz " * 600 if case.long_prompt else "jazz trio"
    machine = simulate(probe(), gpu_mem=[int(case.card_gib * 2**30)], ram=64 * 2**30)
    job = Job(case.duration_s, prompt_s=case.prompt_s, text_tokens=text_tokens([prompt]))
    plan = plan_memory(config, job, machine)
    rate = config.audio_encoder.sampling_rate
    given = np.zeros((1, 1, round(case.prompt_s * rate)), np.float32) if case.prompt_s else None
    run = run_plan(config, plan, prompt, GenerateSettings(duration=case.duration_s, seed=1), prompt_audio=given,
                   tokenizer_dir=tokenizer_dir)
    return Checked(case, plan.estimates.peak_vram_bytes[0], run, plan)


def max_vram_for(tensor_bytes: int) -> int:
    """The --max-vram (with --reserve 0) that leaves `tensor_bytes` to a plan's tensors once the
    workspace reserve (estimates.workspace_reserve) is taken from it."""
    import math

    from musicgen_cli.planning import estimates as K

    return math.ceil((tensor_bytes + K.CUBLAS_WORKSPACE_BYTES) / (1 - K.FRAGMENTATION_SHARE))
