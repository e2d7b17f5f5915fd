"""`mgen import-audiocraft`: audiocraft-format checkpoints of the tiny models, converted and checked."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import torch
from audiocraft_export import codec_state, lm_cfg, lm_state, package, write_audiocraft
from safetensors.torch import load_file
from typer.testing import CliRunner

from musicgen_cli.arch import model_class
from musicgen_cli.cli.app import app, main
from musicgen_cli.errors import MgenError
from musicgen_cli.importing.audiocraft import (
    REPORT_FILE,
    ImportRefused,
    import_audiocraft,
)
from musicgen_cli.store.cache import read_marker
from musicgen_cli.store.manifest import load_manifest
from musicgen_cli.testing import ModelSpec, build_model

# Tiny models on a shared 2-core machine: one thread avoids oversubscription stalls (10x here).
torch.set_num_threads(1)

class _Sources(dict):
    def __missing__(self, variant: str):
        self[variant] = build_model(ModelSpec(variant=variant, seed=1))
        return self[variant]


@pytest.fixture(scope="module")
def sources() -> dict:
    """Tiny models (built on first use) whose weights differ from the tiny-random bases (seed 1 vs 0)."""
    return _Sources()


def _rename(prefix_map: dict[str, str]):
    def edit(state: dict) -> dict:
        out = {}
        for name, tensor in state.items():
            for old, new in prefix_map.items():
                name = name.replace(old, new)
            out[name] = tensor
        return out

    return edit


def _assert_round_trip(folder: Path, source, cache_dir: Path, base: str) -> None:
    """Every written weight equals the source's, except the text encoder, which is the base's."""
    written = load_file(folder / "model.safetensors")
    base_weights = load_file(cache_dir / base / "model.safetensors")
    expected = source.state_dict()
    assert set(expected) - set(written) == {"text_encoder.encoder.embed_tokens.weight"}  # tied to shared
    for name, tensor in written.items():
        reference = base_weights[name] if name.startswith("text_encoder.") else expected[name]
        assert torch.equal(tensor, reference), name


def _logits(model, input_ids) -> torch.Tensor:
    codebooks = model.config.decoder.num_codebooks
    decoder_ids = torch.arange(3 * codebooks).reshape(codebooks, 3) % model.config.decoder.vocab_size
    with torch.no_grad():
        return model(input_ids=input_ids, decoder_input_ids=decoder_ids).logits


def test_clean_import_round_trips_and_registers(tmp_path, cache_dir, sources):
    source = sources["mono"]
    result = import_audiocraft([write_audiocraft(tmp_path / "ft", source)], "ft", base="tiny-random")

    report = result.report
    assert report.ok and not report.proposed and not report.unmatched_source
    assert report.counts() == {"exact": 0, "rule": len(report.matches), "suffix": 0, "shape": 0, "fuzzy": 0}
    assert result.folder == cache_dir / "ft"
    _assert_round_trip(result.folder, source, cache_dir, "tiny-random")
    assert result.audio_shape[:2] == (1, 1) and result.audio_shape[2] > 0

    arch = result.arch
    assert (arch.hidden, arch.layers, arch.heads, arch.ffn, arch.codebooks, arch.card) == (32, 2, 2, 64, 4, 64)
    entry = load_manifest(cache_dir).get("ft")
    assert entry.source == "user" and entry.shape == "tiny" and entry.capabilities.channels == 1
    assert load_manifest(cache_dir).is_cached(entry) and read_marker(result.folder)["base"] == "tiny-random"
    assert json.loads((result.folder / REPORT_FILE).read_text())["counts"]["rule"] == len(report.matches)
    assert not [p for p in cache_dir.iterdir() if p.name.startswith(".import-")]

    # Same weights + same architecture = same logits as the source with the base's T5.
    converted = model_class(source.config).from_pretrained(result.folder).eval()
    reference = copy.deepcopy(source)
    base = model_class(source.config).from_pretrained(cache_dir / "tiny-random")
    reference.text_encoder.load_state_dict(base.text_encoder.state_dict())
    ids = torch.tensor([[3, 4, 5, 1]])
    assert torch.allclose(_logits(converted, ids), _logits(reference, ids), atol=1e-5)


def test_stereo_training_checkpoint_with_yaml_config(tmp_path, cache_dir, sources):
    source = sources["stereo"]
    folder = write_audiocraft(tmp_path / "st", source, wrapper="training", cfg_style="yaml")
    result = import_audiocraft([folder / "state_dict.bin", folder / "compression_state_dict.bin"], "st", base="tiny-random-stereo")
    assert (result.arch.channels, result.arch.codebooks) == (2, 8)
    assert result.audio_shape[:2] == (1, 2)
    assert load_manifest(cache_dir).get("st").capabilities.stereo
    _assert_round_trip(result.folder, source, cache_dir, "tiny-random-stereo")


def test_melody_with_omegaconf_pickled_config(tmp_path, cache_dir, sources):
    pytest.importorskip("omegaconf")  # only to *write* a file like the released ones; reading needs none
    source = sources["melody"]
    folder = write_audiocraft(tmp_path / "mel", source, cfg_style="omegaconf")
    result = import_audiocraft([folder], "mel", base="tiny-random-melody")
    assert result.arch.melody and result.arch.chroma_dim == 12 and not result.arch.cross_attention
    assert sorted(result.report.ignored_source) == [
        "condition_provider.conditioners.self_wav.chroma.fbanks",
        "condition_provider.conditioners.self_wav.chroma.spec.window",
    ]
    assert load_manifest(cache_dir).get("mel").capabilities.melody
    _assert_round_trip(result.folder, source, cache_dir, "tiny-random-melody")


def test_prefixed_names_match_by_suffix(tmp_path, cache_dir, sources):
    source = sources["mono"]
    folder = write_audiocraft(
        tmp_path / "pre",
        source,
        lm_edit=lambda s: {f"lm.{n}": t for n, t in s.items()},
        codec_edit=lambda s: {f"model.{n}": t for n, t in s.items()},
    )
    result = import_audiocraft([folder], "pre", base="tiny-random", check=False)
    counts = result.report.counts()
    assert counts["suffix"] == len(result.report.matches) and counts["rule"] == 0
    _assert_round_trip(result.folder, source, cache_dir, "tiny-random")


def test_renamed_parameter_matches_by_shape(tmp_path, cache_dir, sources):
    source = sources["mono"]
    edit = _rename({"linears.2.weight": "linears.2.kernel", "out_norm.bias": "out_norm.beta"})
    result = import_audiocraft([write_audiocraft(tmp_path / "sh", source, lm_edit=edit)], "sh", base="tiny-random", check=False)
    shape_matches = {m.source: m.target for m in result.report.matches if m.kind == "shape"}
    assert shape_matches == {
        "linears.2.kernel": "decoder.lm_heads.2.weight",
        "out_norm.beta": "decoder.model.decoder.layer_norm.bias",
    }
    _assert_round_trip(result.folder, source, cache_dir, "tiny-random")


def test_missing_weight_is_refused_and_nothing_written(tmp_path, cache_dir, sources):
    edit = lambda s: {n: t for n, t in s.items() if n != "out_norm.weight"}  # noqa: E731
    folder = write_audiocraft(tmp_path / "miss", sources["mono"], lm_edit=edit)
    with pytest.raises(ImportRefused, match=r"1 required weight\(s\) missing, e\.g\. decoder\.model\.decoder\.layer_norm\.weight") as info:
        import_audiocraft([folder], "miss", base="tiny-random")
    assert info.value.report.unmatched_target == ["decoder.model.decoder.layer_norm.weight"]
    assert not (cache_dir / "miss").exists() and "miss" not in load_manifest(cache_dir).entries
    assert not [p for p in cache_dir.iterdir() if p.name.startswith(".import-")]


def test_shape_mismatch_is_an_error(tmp_path, cache_dir, sources):
    def edit(state):
        state["linears.1.weight"] = torch.zeros(63, 32)
        return state

    folder = write_audiocraft(tmp_path / "bad", sources["mono"], lm_edit=edit)
    with pytest.raises(ImportRefused, match=r"wrong shape, e\.g\. linears\.1\.weight \[63, 32\] -> decoder\.lm_heads\.1\.weight \[64, 32\]"):
        import_audiocraft([folder], "bad", base="tiny-random")


def test_fuzzy_matches_are_proposed_until_apply_proposed(tmp_path, cache_dir, sources, monkeypatch):
    source = sources["mono"]
    folder = write_audiocraft(tmp_path / "fz", source, lm_edit=_rename({"linears.": "lm_head."}))
    runner = CliRunner()
    args = ["import-audiocraft", str(folder), "--key", "fz", "--base", "tiny-random", "--no-check"]

    refused = runner.invoke(app, args)
    assert isinstance(refused.exception, ImportRefused) and "--apply-proposed" in str(refused.exception)
    assert "Proposed matches, NOT applied" in refused.output and "lm_head.0.weight" in refused.output
    assert "decoder.lm_heads.3.weight" in refused.output  # listed as missing too
    assert not (cache_dir / "fz").exists()

    monkeypatch.setenv("APPLY_PROPOSED", "1")
    applied = runner.invoke(app, [*args, "--json"])
    assert applied.exit_code == 0, applied.output
    data = json.loads(applied.stdout)
    assert data["imported"] and data["report"]["counts"]["fuzzy"] == 4
    fuzzy = {m["source"]: m["target"] for m in data["report"]["matches"] if m["kind"] == "fuzzy"}
    assert fuzzy == {f"lm_head.{i}.weight": f"decoder.lm_heads.{i}.weight" for i in range(4)}
    _assert_round_trip(cache_dir / "fz", source, cache_dir, "tiny-random")


def test_codec_reference_uses_the_base_codec(tmp_path, cache_dir, sources):
    folder = tmp_path / "ref"
    folder.mkdir()
    torch.save(package(lm_state(sources["mono"]), lm_cfg(sources["mono"])), folder / "state_dict.bin")
    torch.save({"pretrained": "facebook/encodec_32khz", "exported": True, "version": "1.3.0"}, folder / "compression_state_dict.bin")
    result = import_audiocraft([folder], "ref", base="tiny-random", check=False)
    assert any("pretrained codec" in note for note in result.notes)
    written = load_file(result.folder / "model.safetensors")
    base = load_file(cache_dir / "tiny-random" / "model.safetensors")
    codec_names = [n for n in base if n.startswith("audio_encoder.")]
    assert codec_names and all(torch.equal(written[n], base[n]) for n in codec_names)


class NotAWeight:
    """Any class in a pickle is code torch would import and run when loading unsafely."""


def test_pickled_code_is_refused(tmp_path, cache_dir, sources):
    folder = write_audiocraft(tmp_path / "evil", sources["mono"])
    pkg = torch.load(folder / "state_dict.bin", weights_only=True)
    pkg["xp.cfg"] = NotAWeight()
    torch.save(pkg, folder / "state_dict.bin")
    with pytest.raises(MgenError, match=r"state_dict\.bin contains pickled code \(.*NotAWeight\); mgen never runs code"):
        import_audiocraft([folder], "evil", base="tiny-random")


def test_truncated_file_is_refused_with_one_line(tmp_path, cache_dir, sources, monkeypatch, capsys):
    folder = write_audiocraft(tmp_path / "cut", sources["mono"])
    data = (folder / "compression_state_dict.bin").read_bytes()
    (folder / "compression_state_dict.bin").write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(sys, "argv", ["mgen", "import-audiocraft", str(folder), "--key", "cut", "--base", "tiny-random"])
    with pytest.raises(SystemExit) as exit_info:
        main()  # the console-script entry: user errors become one line, no traceback
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "compression_state_dict.bin is truncated or not a torch checkpoint" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 3
    assert not (cache_dir / "cut").exists()


def test_existing_key_needs_force(tmp_path, cache_dir, sources):
    folder = write_audiocraft(tmp_path / "dup", sources["mono"])
    with pytest.raises(MgenError, match="ships with mgen"):
        import_audiocraft([folder], "tiny-random", base="tiny-random", force=True)
    import_audiocraft([folder], "dup", base="tiny-random", check=False)
    with pytest.raises(MgenError, match="--force"):
        import_audiocraft([folder], "dup", base="tiny-random", check=False)
    again = import_audiocraft([folder], "dup", base="tiny-random", check=False, force=True)
    assert again.folder.is_dir() and (again.folder / "model.safetensors").is_file()


@pytest.mark.parametrize("variant", ["mono", "stereo"])
def test_bare_state_dicts_without_config(tmp_path, cache_dir, sources, variant):
    """A trainer that saved only `lm.state_dict()`: heads from the base, channels from the codebooks."""
    source, base = sources[variant], {"mono": "tiny-random", "stereo": "tiny-random-stereo"}[variant]
    folder = tmp_path / "bare"
    folder.mkdir()
    torch.save(lm_state(source), folder / "state_dict.bin")
    torch.save(codec_state(source), folder / "compression_state_dict.bin")
    result = import_audiocraft([folder], "bare", base=base, check=False)
    assert result.arch.heads == source.config.decoder.num_attention_heads
    assert result.arch.channels == source.config.decoder.audio_channels
    assert any("no transformer_lm.num_heads" in n for n in result.notes)
    _assert_round_trip(result.folder, source, cache_dir, base)


def test_config_that_disagrees_with_the_weights_is_refused(tmp_path, cache_dir, sources):
    folder = write_audiocraft(tmp_path / "mix", sources["mono"])
    pkg = torch.load(folder / "state_dict.bin", weights_only=True)
    pkg["xp.cfg"]["transformer_lm"]["num_layers"] = 24
    torch.save(pkg, folder / "state_dict.bin")
    with pytest.raises(MgenError, match=r"xp\.cfg disagrees with its weights: transformer_lm\.num_layers=24 but the weights say 2"):
        import_audiocraft([folder], "mix", base="tiny-random")


def test_default_base_must_be_available(tmp_path, cache_dir, sources, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = write_audiocraft(tmp_path / "nobase", sources["mono"])
    with pytest.raises(MgenError, match=r"base model 'small', which lends the T5 text encoder and tokenizer.*--base"):
        import_audiocraft([folder], "nobase")
