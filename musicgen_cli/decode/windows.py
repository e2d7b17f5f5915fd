"""Token generation for MusicGen: the public entry point and the transformers reference engine.

`generate_codes` returns undelayed EnCodec codes. Two engines produce the same tokens for the
same seed: "fast" (our static-cache loop, `fastloop.py`) and "reference" (transformers'
`generate`). Clips longer than one window are made window by window, each window continuing
from the tail of the previous one, the way audiocraft extends past 30 s.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import torch

from musicgen_cli.arch import WINDOW_SECONDS
from musicgen_cli.decode import delay
from musicgen_cli.decode.types import (
    CONTEXT_SECONDS,
    WindowRequest,
    Sampling,
    StepCallback,
    decode_steps,
    layout,
)


def generate_codes(model, *, input_ids, attention_mask, num_frames: int, sampling: Sampling,
                   prompt_codes=None, melody_features=None, engine: str = "fast",
                   on_step: StepCallback | None = None,
                   window_frames: int | None = None,
                   context_frames: int | None = None,
                   melody_for: Callable[[int], torch.Tensor] | None = None) -> torch.LongTensor:
    """Undelayed codes `[batch, K, prompt_frames + num_frames]` for a batch of text prompts.

    `melody_for(start_frame)`, when given, supplies each window's melody features (audiocraft
    moves the melody forward to the window's start); otherwise every window gets `melody_features`.
    """
    if engine_for(model, engine) == "fast":
        from musicgen_cli.decode.fastloop import generate_window
    else:
        generate_window = reference_window
    num_codebooks, channels, _ = layout(model)
    prompt_frames = 0 if prompt_codes is None else prompt_codes.shape[-1]
    if num_frames < 1 or prompt_frames + num_frames < num_codebooks // channels:
        raise ValueError(f"need at least {num_codebooks // channels} frames in all, got {num_frames}")
    frame_rate = model.config.audio_encoder.frame_rate
    window = window_frames or int(WINDOW_SECONDS * frame_rate)
    context = int(CONTEXT_SECONDS * frame_rate) if context_frames is None else context_frames
    plan = window_plan(prompt_frames, num_frames, window, context)
    total = sum(decode_steps(model, new) for _, new in plan)
    done = 0
    codes = prompt_codes

    def report(step: int, _: int) -> None:
        if on_step is not None:
            on_step(done + step, total)

    for (context, new), start in zip(plan, window_starts(plan, prompt_frames)):
        melody = melody_for(start) if melody_for is not None else melody_features
        request = WindowRequest(input_ids, attention_mask, new, sampling,
                          None if codes is None or context == 0 else codes[..., -context:], melody)
        window_codes = generate_window(model, request, report)
        fresh = window_codes[..., window_codes.shape[-1] - new :]
        codes = fresh if codes is None else torch.cat([codes, fresh.to(codes.device)], dim=-1)
        done += decode_steps(model, new)
    return codes


def engine_for(model, engine: str) -> str:
    """The engine that runs `model` when `engine` is asked for."""
    if engine not in ("fast", "reference"):
        raise ValueError(f"unknown engine {engine!r}: use 'fast' or 'reference'")
    # accelerate's disk offload leaves weights on the meta device behind hooks; only
    # transformers' forward knows how to page them in, so such models take the reference.
    # A model the loader placed itself has no hooks: meta weights there stand for a GPU's
    # (the VRAM ledger's stand-in device), and the fast loop runs it.
    from musicgen_cli.decode.offload import placement_of

    if engine == "fast" and placement_of(model) is None and any(p.is_meta for p in model.decoder.parameters()):
        return "reference"
    return engine


def window_plan(prompt_frames: int, num_frames: int, window: int, context: int) -> list[tuple[int, int]]:
    """(context frames kept, new frames) per window. One window when everything fits; after
    that each window keeps the last `context` frames and fills the rest."""
    if prompt_frames + num_frames <= window:
        return [(prompt_frames, num_frames)]
    if not 0 <= context < window:
        raise ValueError(f"context of {context} frames must be shorter than the window of {window}")
    plan, have, left = [], prompt_frames, num_frames
    while left > 0:
        kept = min(have, context)
        new = min(left, window - kept)
        plan.append((kept, new))
        have, left = have + new, left - new
    return plan


def window_starts(plan: list[tuple[int, int]], prompt_frames: int) -> list[int]:
    """The frame (in the whole piece, prompt included) where each window of `plan` begins."""
    starts, have = [], prompt_frames
    for kept, new in plan:
        starts.append(have - kept)
        have += new
    return starts


def reference_window(model, request: WindowRequest, on_step: StepCallback) -> torch.LongTensor:
    """One window through transformers' `generate`, capturing the tokens on the way.

    `generate` always decodes audio at the end and (in transformers 5) does not forward a
    streamer to its sampling loop, so a stopping criterion that never stops watches the
    delayed sequence after every step; its last view is forced through the delay pattern and
    undelayed exactly as `generate` does before its audio decode.
    """
    from transformers import StoppingCriteria, StoppingCriteriaList

    num_codebooks, channels, pad = layout(model)
    steps = decode_steps(model, request.frames)
    batch = request.input_ids.shape[0]

    class Watcher(StoppingCriteria):
        def __init__(self) -> None:
            self.sequence: torch.Tensor | None = None
            self.step = 0

        def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.BoolTensor:
            self.sequence = input_ids
            self.step += 1
            on_step(self.step, steps)
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    device = model.text_encoder.device
    kwargs = dict(
        input_ids=request.input_ids.to(device),
        attention_mask=None if request.attention_mask is None else request.attention_mask.to(device),
        max_new_tokens=steps,
        guidance_scale=request.sampling.guidance_scale,
        do_sample=request.sampling.do_sample,
    )
    if request.sampling.do_sample:
        kwargs.update(temperature=request.sampling.temperature, top_k=request.sampling.top_k,
                      top_p=request.sampling.top_p or 1.0)
    else:
        kwargs.update(temperature=None, top_k=None, top_p=None)
    if request.prompt_codes is not None:
        kwargs["decoder_input_ids"] = request.prompt_codes.reshape(batch * num_codebooks, -1).to(device)
    if request.melody_features is not None:
        kwargs["input_features"] = request.melody_features.to(device=device, dtype=model.dtype)
    watcher = Watcher()
    with torch.no_grad(), _aligned(model):
        model.generate(stopping_criteria=StoppingCriteriaList([watcher]), **kwargs)
    sequence = watcher.sequence.cpu().reshape(batch, num_codebooks, -1)
    forced = delay.pattern(request.prompt_codes, batch, num_codebooks, channels, sequence.shape[-1], pad)
    sequence = torch.where(forced == delay.PREDICT, sequence, forced)
    return delay.undelay(sequence, channels)


@contextmanager
def _aligned(model):
    """For transformers' forward over a placed model (layers on several devices, RAM layers
    computed on the CPU): inputs follow each module to its weights, and come back. Hooks live
    only for the call, so they leave no reference cycles behind."""
    from musicgen_cli.decode.offload import placement_of

    placement = placement_of(model)
    if placement is None:
        yield
        return
    from accelerate.hooks import (
        AlignDevicesHook,
        add_hook_to_module,
        remove_hook_from_module,
    )

    # generate keeps its tensors where T5 runs (the CPU); the decoder stack, each layer and
    # each head compute where their weights are and hand results back.
    stack = model.decoder.model.decoder
    hooked = [(stack, placement.main), *((head, head.weight.device) for head in model.decoder.lm_heads)]
    hooked += [(layer, layer.final_layer_norm.weight.device) for layer in stack.layers]
    codec = model.audio_encoder
    codec_device = next(codec.parameters()).device
    decode = codec.decode
    codec.decode = lambda *args, **kwargs: decode(*_to(args, codec_device), **dict(zip(kwargs, _to(kwargs.values(), codec_device))))
    try:
        for module, device in hooked:
            add_hook_to_module(module, AlignDevicesHook(execution_device=device, io_same_device=True,
                                                        skip_keys=("past_key_values", "past_key_value")))
        yield
    finally:
        for module, _ in hooked:
            remove_hook_from_module(module)
        del codec.decode


def _to(values, device) -> list:
    return [v.to(device) if isinstance(v, torch.Tensor) else v for v in values]
