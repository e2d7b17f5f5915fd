"""The fast decode loop picks exactly the tokens transformers' generate picks.

Real transformers modules with tiny random configs; every comparison runs both engines from
the same seed and asserts token equality.
"""

from __future__ import annotations

import pytest
import torch

from musicgen_cli.decode import delay
from musicgen_cli.decode.types import Sampling
from musicgen_cli.decode.windows import generate_codes, window_plan
from musicgen_cli.engine.quantize import Int8Linear, quantize_int8
from musicgen_cli.testing import ModelSpec, build_model

PROMPTS = ["jazz piano trio with drums", "slow ambient synth"]
SAMPLINGS = {
    "greedy-cfg": Sampling(do_sample=False),
    "topk-cfg": Sampling(),
    "topk-nocfg": Sampling(guidance_scale=1.0),
    "topp-temp": Sampling(top_k=0, top_p=0.9, temperature=0.7),
}


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def text(tiny_tokenizer):
    return tiny_tokenizer(PROMPTS, return_tensors="pt", padding=True)


@pytest.fixture(scope="module")
def models():
    return {v: build_model(ModelSpec(variant=v)) for v in ("mono", "stereo", "melody")}


def both_engines(model, text, seed=3, **kwargs):
    out = {}
    for engine in ("reference", "fast"):
        torch.manual_seed(seed)
        out[engine] = generate_codes(model, input_ids=text.input_ids, attention_mask=text.attention_mask,
                                     engine=engine, **kwargs)
    return out["reference"], out["fast"]


def random_prompt(model, frames=6):
    generator = torch.Generator().manual_seed(11)
    config = model.decoder.config
    return torch.randint(0, config.vocab_size, (len(PROMPTS), config.num_codebooks, frames), generator=generator)


@pytest.mark.parametrize(("variant", "sampling", "with_prompt"), [
    ("mono", "greedy-cfg", False), ("mono", "topk-cfg", True), ("mono", "topk-nocfg", False),
    ("mono", "topp-temp", True), ("stereo", "greedy-cfg", True), ("stereo", "topk-cfg", False),
    ("melody", "topk-cfg", False), ("melody", "greedy-cfg", True), ("melody", "topp-temp", False),
])
def test_fast_loop_picks_the_reference_tokens(models, text, variant, sampling, with_prompt):
    model = models[variant]
    prompt = random_prompt(model) if with_prompt else None
    ref, fast = both_engines(model, text, num_frames=12, sampling=SAMPLINGS[sampling], prompt_codes=prompt)
    frames = 12 + (0 if prompt is None else prompt.shape[-1])
    assert fast.shape == (len(PROMPTS), model.decoder.config.num_codebooks, frames)
    assert torch.equal(ref, fast)
    if prompt is not None:
        assert torch.equal(fast[..., : prompt.shape[-1]], prompt)


def test_melody_features_condition_both_engines_alike(models, text):
    chroma = torch.rand(len(PROMPTS), 40, 12, generator=torch.Generator().manual_seed(2))
    ref, fast = both_engines(models["melody"], text, num_frames=12, sampling=Sampling(), melody_features=chroma)
    assert torch.equal(ref, fast)


def test_long_clips_are_made_window_by_window(models, text):
    model = models["stereo"]
    steps = []
    torch.manual_seed(3)
    fast = generate_codes(model, input_ids=text.input_ids, attention_mask=text.attention_mask, num_frames=45,
                          sampling=Sampling(), window_frames=20, context_frames=8,
                          on_step=lambda s, t: steps.append((s, t)))
    torch.manual_seed(3)
    ref = generate_codes(model, input_ids=text.input_ids, attention_mask=text.attention_mask, num_frames=45,
                         sampling=Sampling(), window_frames=20, context_frames=8, engine="reference")
    assert fast.shape == (2, 8, 45)
    assert torch.equal(ref, fast)
    plan = window_plan(0, 45, 20, 8)
    total = sum(new + 3 for _, new in plan)
    assert [s for s, _ in steps] == list(range(1, total + 1))
    assert {t for _, t in steps} == {total}


def test_window_plan_keeps_context_and_covers_every_frame():
    assert window_plan(5, 10, 1500, 500) == [(5, 10)]
    plan = window_plan(0, 3000, 1500, 500)  # 30 s windows, 10 s context: a 20 s stride
    assert plan[0] == (0, 1500)
    assert all(kept == 500 and kept + new <= 1500 for kept, new in plan[1:])
    assert sum(new for _, new in plan) == 3000
    assert window_plan(900, 1000, 1500, 500)[0] == (500, 1000)
    with pytest.raises(ValueError):
        window_plan(0, 3000, 1500, 1500)


@pytest.mark.parametrize("variant", ["mono", "stereo"])
def test_delay_pattern_matches_transformers(models, variant):
    model = models[variant]
    prompt = random_prompt(model, frames=5)
    k = model.decoder.config.num_codebooks
    pad = model.generation_config.pad_token_id
    ids = torch.cat([torch.full((2 * k, 1), pad), prompt.reshape(2 * k, 5)], dim=-1)
    _, expected = model.decoder.build_delay_pattern_mask(ids, pad, max_length=15)
    mine = delay.pattern(prompt, 2, k, model.decoder.config.audio_channels, 15, pad)
    assert torch.equal(mine, expected.reshape(2, k, 15))
    filled = torch.where(mine == delay.PREDICT, 7, mine)
    assert torch.equal(delay.undelay(filled, model.decoder.config.audio_channels)[..., :5], prompt)


def test_int8_quantises_the_decoder_and_still_generates(text, float32_cache):
    model = build_model(ModelSpec(variant="mono"))
    torch.manual_seed(3)
    fp32 = generate_codes(model, input_ids=text.input_ids, attention_mask=text.attention_mask, num_frames=16,
                          sampling=Sampling(do_sample=False))
    encoder_weight = model.text_encoder.encoder.block[0].layer[0].SelfAttention.q.weight
    assert quantize_int8(model) is model
    assert all(not isinstance(m, torch.nn.Linear) for m in model.decoder.modules())
    assert isinstance(model.decoder.lm_heads[0], Int8Linear)
    assert model.decoder.model.decoder.layers[0].fc1.weight.dtype == torch.int8
    assert model.text_encoder.encoder.block[0].layer[0].SelfAttention.q.weight is encoder_weight
    ref, fast = both_engines(model, text, num_frames=16, sampling=Sampling(do_sample=False))
    assert torch.equal(ref, fast)
    assert fast.shape == fp32.shape and 0 <= int(fast.min()) and int(fast.max()) < 64
    # Quality, teacher-forced so one early flip cannot cascade: same inputs, logits close, same argmax.
    reference = build_model(ModelSpec(variant="mono"))
    codes = torch.randint(0, 64, (4 * text.input_ids.shape[0], 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = reference(**text, decoder_input_ids=codes).logits
        got = model(**text, decoder_input_ids=codes).logits
    assert (got - want).abs().max() < 0.05 * want.abs().max()
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() > 0.9


def test_bad_requests_are_refused(models, text):
    with pytest.raises(ValueError, match="engine"):
        generate_codes(models["mono"], input_ids=text.input_ids, attention_mask=text.attention_mask,
                       num_frames=8, sampling=Sampling(), engine="turbo")
    with pytest.raises(ValueError, match="frames"):
        generate_codes(models["mono"], input_ids=text.input_ids, attention_mask=text.attention_mask,
                       num_frames=0, sampling=Sampling())


def test_static_step_for_cuda_graphs_matches_the_dynamic_step(models, text):
    from musicgen_cli.decode.fastloop import Decoder, condition
    from musicgen_cli.decode.types import WindowRequest

    model = models["mono"]
    request = WindowRequest(text.input_ids, text.attention_mask, 8, Sampling(), None, None)
    with torch.inference_mode():
        conditioning = condition(model, request, torch.device("cpu"))
        dynamic, static = (Decoder(model, 4, 10, conditioning) for _ in range(2))
        start = torch.full((4, 4, 1), model.generation_config.pad_token_id)
        assert torch.equal(dynamic(start), static(start))
        generator = torch.Generator().manual_seed(0)
        for _ in range(6):
            codes = torch.randint(0, 64, (4, 4, 1), generator=generator)
            expected = dynamic(codes)
            got = static.step_static(codes, torch.tensor([static.pos]))
            static.pos += 1
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_and_streamed_layers_decode_like_eager(text):
    from musicgen_cli.decode.offload import offload_layers

    def run(model):
        torch.manual_seed(3)
        return generate_codes(model, input_ids=text.input_ids, attention_mask=text.attention_mask,
                              num_frames=20, sampling=Sampling(do_sample=False))

    cpu = run(build_model(ModelSpec(variant="stereo")))
    graphed = run(build_model(ModelSpec(variant="stereo")).to("cuda"))
    assert graphed.shape == cpu.shape and (graphed == cpu).float().mean() > 0.9
    streamed_model = build_model(ModelSpec(variant="stereo")).to("cuda")
    assert offload_layers(streamed_model, gpu_budget_bytes=0) > 0
    assert streamed_model.decoder.model.decoder.layers[1].fc1.weight.device.type == "cpu"
    assert (run(streamed_model) == cpu).float().mean() > 0.9


def test_models_with_accelerate_offloaded_weights_fall_back_to_the_reference(text):
    from accelerate import cpu_offload

    plain = build_model(ModelSpec(variant="mono"))
    offloaded = build_model(ModelSpec(variant="mono"))
    cpu_offload(offloaded.decoder, execution_device=torch.device("cpu"))
    assert any(p.is_meta for p in offloaded.decoder.parameters())
    ref, _ = both_engines(plain, text, num_frames=10, sampling=Sampling())
    torch.manual_seed(3)
    fast = generate_codes(offloaded, input_ids=text.input_ids, attention_mask=text.attention_mask,
                          num_frames=10, sampling=Sampling())
    assert torch.equal(ref, fast)


def test_dynamic_int8_scheme_generates_valid_codes(text, float32_cache):
    from musicgen_cli.decode.cpu_linear import DynamicInt8Linear
    from musicgen_cli.decode.fastloop import Decoder, condition
    from musicgen_cli.decode.types import WindowRequest

    model = quantize_int8(build_model(ModelSpec(variant="mono")), scheme="dynamic")
    assert not any(isinstance(m, torch.nn.Linear) and type(m) is torch.nn.Linear for m in model.decoder.modules())
    request = WindowRequest(text.input_ids, text.attention_mask, 8, Sampling(), None, None)
    with torch.inference_mode():
        decoder = Decoder(model, 4, 10, condition(model, request, torch.device("cpu")))
    ops = decoder.ops[0]
    assert all(isinstance(f, DynamicInt8Linear) for f in (ops.q, ops.out, ops.cross_q, ops.fc1, *decoder.lm_heads))
    ref, fast = both_engines(model, text, num_frames=10, sampling=Sampling())  # fbgemm's op called directly
    assert torch.equal(ref, fast)
    assert fast.shape == (2, 4, 10) and 0 <= int(fast.min()) and int(fast.max()) < 64
    with pytest.raises(ValueError, match="scheme"):
        quantize_int8(model, scheme="int4")


@pytest.fixture
def blocks_of_16(monkeypatch):
    """The tiny models' widths (32, 64) take the blocked float32 GEMM with blocks of 16."""
    from musicgen_cli.decode import cpu_linear

    monkeypatch.setattr(cpu_linear, "BLOCK", 16)
    monkeypatch.setitem(cpu_linear._WINS, 16, cpu_linear._exact())
    assert cpu_linear._WINS[16], "the blocked GEMM is not bitwise F.linear with this BLAS"


@pytest.mark.parametrize(("variant", "sampling", "with_prompt"), [
    ("mono", "topk-cfg", True), ("stereo", "greedy-cfg", False), ("melody", "topp-temp", True),
])
def test_blocked_float32_projections_keep_the_reference_tokens(models, text, blocks_of_16, variant, sampling,
                                                                 with_prompt):
    from musicgen_cli.decode.cpu_linear import BlockedLinear
    from musicgen_cli.decode.fastloop import Decoder, condition
    from musicgen_cli.decode.types import WindowRequest

    model = models[variant]
    request = WindowRequest(text.input_ids, text.attention_mask, 8, Sampling(), None, None)
    with torch.inference_mode():
        decoder = Decoder(model, 4, 10, condition(model, request, torch.device("cpu")))
    ops = decoder.ops[0]
    assert all(isinstance(f, BlockedLinear) for f in (ops.q, ops.k, ops.v, ops.out, ops.fc1, ops.fc2))
    assert all(isinstance(head, BlockedLinear) for head in decoder.lm_heads)
    prompt = random_prompt(model) if with_prompt else None  # a prompt prefills many rows at once
    ref, fast = both_engines(model, text, num_frames=12, sampling=SAMPLINGS[sampling], prompt_codes=prompt)
    assert torch.equal(ref, fast)


def test_blocked_linear_is_bitwise_linear_at_the_released_widths():
    from musicgen_cli.decode.cpu_linear import BlockedLinear, _exact, blocked_wins, fast_linear

    # Whether the blocked form is exact belongs to the BLAS build and the CPU (on AMX Xeons MKL
    # changes its kernel past 8 rows), so what must hold everywhere is that the form chosen here
    # is; the blocked form itself is held to exactness wherever the per-process check passed.
    generator = torch.Generator().manual_seed(0)
    for out_features, in_features in ((1024, 1024), (4096, 1024), (1024, 4096), (2048, 1024), (1536, 1536), (2048, 8192)):
        linear = torch.nn.Linear(in_features, out_features, bias=False).requires_grad_(False)
        chosen = fast_linear(linear)
        assert isinstance(chosen, BlockedLinear) == blocked_wins()
        for rows in (2, 2 * 37):
            x = torch.randn(rows, 1, in_features, generator=generator)
            assert torch.equal(chosen(x), linear(x))
            if _exact():
                assert torch.equal(BlockedLinear(linear.weight)(x), linear(x))
    biased = torch.nn.Linear(1024, 1024)
    assert fast_linear(biased) is biased and fast_linear(biased.to(torch.bfloat16)) is biased


def test_kernel_timings_leave_the_users_seed_alone(monkeypatch):
    """The once-per-process timings draw no numbers from the global generator: a seed set
    before the first generation gives the tokens it gives on the second."""
    from musicgen_cli.decode import cpu_linear, fastloop

    monkeypatch.setattr(cpu_linear, "_WINS", {})
    monkeypatch.setattr(fastloop, "_ATTENTION_DTYPES", {})
    torch.manual_seed(5)
    cpu_linear.blocked_wins()
    fastloop.attention_dtype(torch.device("cpu"), torch.bfloat16)
    assert cpu_linear._WINS and fastloop._ATTENTION_DTYPES  # both timings ran
    drawn = torch.rand(4)
    torch.manual_seed(5)
    assert torch.equal(torch.rand(4), drawn)
