"""Our MusicGen decode loop: the loaded model's own modules driven over a static KV cache.

In the spirit of gpt-fast: no generic generation machinery, no per-step mask building or
cache bookkeeping, just the decoder layers called on one new column of codes per step.

- The self-attention cache is allocated once for the whole window and grows by one position
  per step; the cross-attention keys/values are computed once from the text.
- Classifier-free guidance runs the conditional and unconditional rows as one batch.
- Every operation mirrors transformers' MusicGen forward in order and shape, so with the same
  seed the tokens are the ones `generate` picks (see tests/test_decode.py).
- On CUDA the one-token step can be captured in a CUDA graph (`cudagraph.py`); layers kept in
  host memory are streamed to the GPU one layer ahead (`offload.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from musicgen_cli.arch import is_melody
from musicgen_cli.decode import delay, sampler
from musicgen_cli.decode.cpu_linear import fast_linear
from musicgen_cli.decode.types import WindowRequest, StepCallback, decode_steps, layout


@dataclass
class Conditioning:
    """What the text (and melody) contribute: cross-attention states for plain MusicGen, a
    prefix of the decoder's own sequence for MusicGen-Melody. Rows include the CFG half."""

    cross: torch.Tensor | None = None
    cross_mask: torch.Tensor | None = None
    prefix: torch.Tensor | None = None


def _text_states(model, request: WindowRequest) -> tuple[torch.Tensor, torch.Tensor]:
    device = model.text_encoder.device
    ids = request.input_ids.to(device)
    mask = request.attention_mask
    mask = torch.ones_like(ids) if mask is None else mask.to(device)
    return model.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask


def condition(model, request: WindowRequest, device: torch.device) -> Conditioning:
    """The conditioning, computed the way `generate` computes it (same ops, same order)."""
    cfg = request.sampling.cfg
    states, mask = _text_states(model, request)
    # The text encoder runs in float32 beside a bf16/fp16 decoder: its states join the decoder's dtype.
    states = states.to(model.decoder.dtype)
    decoder_config = model.decoder.config
    projects = model.config.text_encoder.hidden_size != decoder_config.hidden_size
    if is_melody(model.config):
        if projects:
            states = model.enc_to_dec_proj(states)
        if cfg:
            states = torch.cat([states, torch.zeros_like(states)])
            mask = torch.cat([mask, torch.zeros_like(mask)])
        states = states * mask[..., None]
        chroma = _chroma_states(model, request, cfg)
        prefix = torch.cat([chroma, states.to(chroma)], dim=1)  # T5's states join it on its device
        return Conditioning(prefix=prefix.to(device))
    if cfg:
        states = torch.cat([states, torch.zeros_like(states)])
        mask = torch.cat([mask, torch.zeros_like(mask)])
    if projects and decoder_config.cross_attention_hidden_size is None:
        states = model.enc_to_dec_proj(states)
    states = states * mask[..., None]
    cross_mask = None
    if not bool(mask.all()):
        # CFG's unconditional rows mask every text position: some CUDA SDPA kernels return NaN
        # for such rows where the CPU returns 0. Their states are zeros and the projections have
        # no bias, so attending to all of them gives the CPU's 0 on every kernel.
        keep = mask.bool()
        keep[~keep.any(-1)] = True
        cross_mask = keep[:, None, None, :].to(device)
    # T5 runs in float32; a half-precision LM takes its states in its own dtype.
    return Conditioning(cross=states.to(device=device, dtype=_lm_dtype(model)), cross_mask=cross_mask)


def _lm_dtype(model) -> torch.dtype:
    return model.decoder.model.decoder.embed_tokens[0].weight.dtype


def _chroma_states(model, request: WindowRequest, cfg: bool) -> torch.Tensor:
    """Melody prefix: chroma projected to the decoder width, tiled or cut to chroma_length.
    Without a melody the model is conditioned on a constant 'null' chroma (bin 0 set)."""
    batch = request.input_ids.shape[0]
    features = request.melody_features
    proj = model.audio_enc_to_dec_proj.weight  # the LM's dtype (model.dtype is T5's float32)
    if features is not None:
        features = features.to(device=proj.device, dtype=proj.dtype)
        null = torch.zeros_like(features)
    else:
        null = torch.zeros((batch, 1, model.config.num_chroma), device=proj.device, dtype=proj.dtype)
    null[:, :, 0] = 1
    features = null if features is None else features
    if cfg:
        features = torch.cat([features, null])
    if model.config.num_chroma != model.decoder.config.hidden_size:
        features = model.audio_enc_to_dec_proj(features)
    length = model.config.chroma_length
    if features.shape[1] < length:
        features = features.repeat(1, math.ceil(length / features.shape[1]), 1)
    return features[:, :length]


class Decoder:
    """The LM decoder as a function of (new columns of codes) over a static KV cache.

    Layers compute where their weights are, except the RAM layers of a placed model, which
    compute the way its plan chose (`offload.Placement`): streamed to the main device one layer
    ahead, or on the CPU.
    """

    def __init__(self, model, rows: int, length: int, conditioning: Conditioning):
        from musicgen_cli.decode.offload import placement_of, streamer_for

        lm = model.decoder
        self.stack = lm.model.decoder
        self.num_codebooks = lm.config.num_codebooks
        self.head_dim = lm.config.hidden_size // lm.config.num_attention_heads
        self.device = self.stack.embed_tokens[0].weight.device
        self.dtype = self.stack.embed_tokens[0].weight.dtype
        self.prefix = conditioning.prefix
        self.pos = 0
        length += 0 if self.prefix is None else self.prefix.shape[1]
        self.length = length
        positions = self.stack.embed_positions
        if length > positions.weights.shape[0]:
            positions.make_weights(length, positions.embedding_dim)
        self.positions = positions.weights.to(self.device)
        placement = placement_of(model)
        self.streamer = streamer_for(self.stack.layers, placement)
        self.where = [layer.final_layer_norm.weight.device if placement is None
                      else placement.device_of(i, layer.final_layer_norm.weight.device)
                      for i, layer in enumerate(self.stack.layers)]
        shape = (rows, lm.config.num_attention_heads, length, self.head_dim)
        # Per layer: a GPU plan's layers that compute on the CPU attend in whatever dtype the CPU
        # attends fastest in, not in the GPU's.
        kv_dtypes = [attention_dtype(d, self.dtype, reduced_precision(layer)) for d, layer in zip(self.where, self.stack.layers)]
        self.cache = [(torch.zeros(shape, dtype=kind, device=d), torch.zeros(shape, dtype=kind, device=d))
                      for d, kind in zip(self.where, kv_dtypes)]
        # Layers that compute on the CPU call their projections through `cpu_linear` (float32 as the
        # exact blocked GEMM, dynamic int8 without the module's Python); streamed layers swap their
        # weights' storage under the modules, so they keep calling the modules.
        self.ops = [_LayerOps(layer, blocked=d.type == "cpu") for layer, d in zip(self.stack.layers, self.where)]
        self.lm_heads = [fast_linear(head) if self.device.type == "cpu" else head for head in lm.lm_heads]
        self.cross = []
        if conditioning.cross is not None:
            mask = conditioning.cross_mask
            for layer, device in zip(self.stack.layers, self.where):
                states = conditioning.cross.to(layer.final_layer_norm.weight.device)
                attn = layer.encoder_attn
                self.cross.append((self._split(attn.k_proj(states)).to(device),
                                   self._split(attn.v_proj(states)).to(device),
                                   None if mask is None else mask.to(device)))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """[rows, n, E] -> [rows, heads, n, head_dim]"""
        return x.view(x.shape[0], x.shape[1], -1, self.head_dim).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)

    def _embed(self, codes: torch.Tensor) -> torch.Tensor:
        return sum(self.stack.embed_tokens[k](codes[:, k]) for k in range(self.num_codebooks))

    def __call__(self, codes: torch.Tensor) -> torch.Tensor:
        """`codes` `[rows, K, n]` (the next n delayed columns) -> logits `[rows*K, vocab]` of the
        last column. The first call also feeds the melody prefix."""
        embeds = self._embed(codes.to(self.device))
        if self.pos == 0 and self.prefix is not None:
            embeds = torch.cat([self.prefix, embeds], dim=1)
        start, n = self.pos, embeds.shape[1]

        def attend(i, q, k, v):
            # Write the new keys/values, attend over the filled part only (no mask needed).
            k_cache, v_cache = self.cache[i]
            k_cache[:, :, start : start + n] = k
            v_cache[:, :, start : start + n] = v
            out = F.scaled_dot_product_attention(q.to(k_cache.dtype), k_cache[:, :, : start + n],
                                                 v_cache[:, :, : start + n], is_causal=n > 1, scale=self.scaling)
            return out.to(q.dtype)

        logits = self._run(embeds + self.positions[start : start + n], attend)
        self.pos = start + n
        return logits

    def step_static(self, codes: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """One column at a device-side `position` over the whole cache with a mask: every shape
        is fixed, so the step can be captured in a CUDA graph and replayed."""
        visible = (torch.arange(self.length, device=self.device) <= position)[None, None, None, :]

        def attend(i, q, k, v):
            k_cache, v_cache = self.cache[i]
            k_cache.index_copy_(2, position.to(k_cache.device), k)
            v_cache.index_copy_(2, position.to(v_cache.device), v)
            return F.scaled_dot_product_attention(q, k_cache, v_cache, attn_mask=visible.to(q.device),
                                                  scale=self.scaling)

        return self._run(self._embed(codes) + self.positions.index_select(0, position), attend)

    @property
    def scaling(self) -> float:
        return self.stack.layers[0].self_attn.scaling

    def _run(self, hidden: torch.Tensor, attend) -> torch.Tensor:
        for i in range(len(self.stack.layers)):
            if self.streamer:
                self.streamer.enter(i)
            hidden = self._layer(i, self.ops[i], hidden.to(self.where[i]), attend)
            if self.streamer:
                self.streamer.exit(i)
        hidden = self.stack.layer_norm(hidden.to(self.device))
        logits = torch.stack([head(hidden) for head in self.lm_heads], dim=1)
        return logits[:, :, -1].reshape(-1, logits.shape[-1])

    def _layer(self, i: int, ops: _LayerOps, hidden: torch.Tensor, attend) -> torch.Tensor:
        x = ops.self_norm(hidden)
        out = attend(i, self._split(ops.q(x)), self._split(ops.k(x)), self._split(ops.v(x)))
        hidden = hidden + ops.out(self._merge(out))
        if self.cross:
            x = ops.cross_norm(hidden)
            keys, values, mask = self.cross[i]
            out = F.scaled_dot_product_attention(self._split(ops.cross_q(x)), keys, values,
                                                 attn_mask=mask, scale=ops.cross_scaling)
            hidden = hidden + ops.cross_out(self._merge(out))
        x = ops.final_norm(hidden)
        return hidden + ops.fc2(ops.activation(ops.fc1(x)))


class _LayerOps:
    """One decoder layer's modules as the step calls them: the same modules, in the same
    order, with the float32 CPU projections through `cpu_linear` (bitwise the same)."""

    def __init__(self, layer, blocked: bool):
        project = fast_linear if blocked else (lambda module: module)
        attn = layer.self_attn
        self.q, self.k, self.v, self.out = (project(m) for m in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj))
        cross = getattr(layer, "encoder_attn", None)  # MusicGen-Melody has none: its text is a prefix
        if cross is not None:
            self.cross_q, self.cross_out = project(cross.q_proj), project(cross.out_proj)
            self.cross_scaling, self.cross_norm = cross.scaling, layer.encoder_attn_layer_norm
        self.fc1, self.fc2, self.activation = project(layer.fc1), project(layer.fc2), layer.activation_fn
        self.self_norm, self.final_norm = layer.self_attn_layer_norm, layer.final_layer_norm


_ATTENTION_DTYPES: dict[tuple[str, torch.dtype], torch.dtype] = {}


def reduced_precision(layer) -> bool:
    """Whether a decoder layer computes below float32 (bf16 weights, int8 or int4 linears): only
    such layers may keep a reduced-precision cache; float32 keeps the reference's exact tokens."""
    q = layer.self_attn.q_proj
    return not (type(q) is torch.nn.Linear and q.weight.dtype == torch.float32)


def attention_dtype(device: torch.device, dtype: torch.dtype, reduced: bool | None = None) -> torch.dtype:
    """The dtype of the self-attention KV cache. Late in a clip the cache, not the weights, is
    most of what a CPU step reads (590 MB at 1500 positions for small in float32, more than its
    int8 weights), so a reduced-precision layer (`reduced`, default: a half-precision `dtype`)
    on a CPU keeps it in bfloat16 where SDPA attends over bfloat16 faster than over float32
    (with AMX; without it, bf16 SDPA is several times slower even though it reads half the
    bytes): timed once per process on a window-sized cache. A float32 layer keeps float32, and
    everywhere else the cache is in the model's dtype."""
    reduced = dtype != torch.float32 if reduced is None else reduced
    if device.type != "cpu" or not reduced:
        return dtype
    key = (device.type, dtype)
    if key not in _ATTENTION_DTYPES:
        _ATTENTION_DTYPES[key] = torch.bfloat16 if attention_seconds(torch.bfloat16) < attention_seconds(torch.float32) else torch.float32
    return _ATTENTION_DTYPES[key]


def attention_seconds(kind: torch.dtype, rows: int = 2, heads: int = 16, positions: int = 1024, layers: int = 8) -> float:
    """Seconds SDPA takes for one float32 query column over `layers` caches of `kind` (the
    query cast in, the output cast back, as the loop does), fastest of a few rounds; the
    caches together are beyond L3, as a long clip's are."""
    from musicgen_cli.decode.cpu_linear import fastest

    # distinct pages, no draws from the process-wide generator (it carries the user's seed)
    size = rows * heads * positions * 64
    caches = [(torch.arange(size, dtype=torch.float32) * 1e-7).view(rows, heads, positions, 64).to(kind)
              for _ in range(2 * layers)]
    query = torch.full((rows, heads, 1, 64), 0.01)

    def attend():
        for i in range(layers):
            F.scaled_dot_product_attention(query.to(kind), caches[2 * i], caches[2 * i + 1]).to(torch.float32)

    attend()
    return fastest(attend)


@torch.inference_mode()
def generate_window(model, request: WindowRequest, on_step: StepCallback) -> torch.LongTensor:
    """One window: prefill start token + prompt (+ melody prefix), then one column per step.
    On CUDA the one-column steps replay a captured graph (no launch overhead)."""
    from musicgen_cli.decode.cudagraph import GraphedStep

    num_codebooks, channels, pad = layout(model)
    batch = request.input_ids.shape[0]
    steps = decode_steps(model, request.frames)
    prompt = request.prompt_codes
    start = 1 + (0 if prompt is None else prompt.shape[-1])
    length = start + steps
    device = _device(model)
    forced = delay.pattern(None if prompt is None else prompt.to(device), batch, num_codebooks, channels,
                           length, pad, device=device)
    sequence = forced.clone()
    cfg = request.sampling.cfg
    decoder = Decoder(model, 2 * batch if cfg else batch, length - 1, condition(model, request, device))
    step_fn = decoder
    draw = sampler.WindowSampler(request.sampling, device, decoder.dtype)
    column = sequence[:, :, :start]
    try:
        for step in range(steps):
            logits = step_fn(torch.cat([column, column]) if cfg else column)
            if step == 0 and GraphedStep.usable(decoder):
                step_fn = GraphedStep(decoder)
            tokens = draw(logits, step + 1).view(batch, num_codebooks)
            at = start + step
            sequence[:, :, at] = torch.where(forced[:, :, at] == delay.PREDICT, tokens, forced[:, :, at])
            column = sequence[:, :, at : at + 1]
            on_step(step + 1, steps)
        draw.finish()
    finally:
        if decoder.streamer is not None:
            decoder.streamer.close()
    return delay.undelay(sequence, channels).cpu()


def _device(model) -> torch.device:
    return model.decoder.model.decoder.embed_tokens[0].weight.device
