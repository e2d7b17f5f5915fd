"""The layered weight-name matcher on small hand-made name/shape tables."""

from __future__ import annotations

from musicgen_cli.importing.keymatch import Rule, canonical, match_keys

TARGET = {
    "decoder.layers.0.fc1.weight": (8, 4),
    "decoder.layers.1.fc1.weight": (8, 4),
    "decoder.layer_norm.weight": (4,),
    "decoder.heads.0.weight": (16, 4),
    "decoder.heads.1.weight": (16, 4),
    "codec.conv.parametrizations.weight.original0": (2, 1, 1),
    "codec.conv.parametrizations.weight.original1": (2, 1, 7),
}


def _kinds(report) -> dict[str, str]:
    return {m.target: m.kind for m in report.matches}


def test_exact_rule_and_weight_norm_spellings():
    renames = {
        "decoder.layers.1.fc1.weight": "transformer.layers.1.linear1.weight",
        "codec.conv.parametrizations.weight.original0": "codec.conv.weight_g",
    }
    source = {renames.get(name, name): shape for name, shape in TARGET.items()}
    rules = [Rule(r"^transformer\.", "decoder."), Rule(r"\.linear1\.", ".fc1.")]
    report = match_keys(source, TARGET, rules)
    assert report.ok and not report.unmatched_source
    kinds = _kinds(report)
    assert kinds["decoder.layers.1.fc1.weight"] == "rule"
    assert kinds["codec.conv.parametrizations.weight.original1"] == "exact"
    assert kinds["codec.conv.parametrizations.weight.original0"] == "exact"  # weight-norm spellings agree
    assert report.mapping()["codec.conv.parametrizations.weight.original0"] == "codec.conv.weight_g"
    assert canonical("a.parametrizations.weight.original1") == "a.weight_v"


def test_suffix_then_shape_then_fuzzy_layers():
    source = {
        "model.decoder.layers.0.fc1.weight": (8, 4),  # extra prefix -> suffix
        "model.decoder.layers.1.fc1.weight": (8, 4),
        "decoder.layer_norm.scale": (4,),  # renamed parameter, only (4,) in its module -> shape
        "decoder.head.0.weight": (16, 4),  # near-miss module name -> fuzzy (proposed)
        "decoder.head.1.weight": (16, 4),
        "codec.conv.weight_g": (2, 1, 1),
        "codec.conv.weight_v": (2, 1, 7),
    }
    report = match_keys(source, TARGET)
    kinds = _kinds(report)
    assert kinds["decoder.layers.0.fc1.weight"] == "suffix"
    assert kinds["decoder.layer_norm.weight"] == "shape"
    assert {(m.source, m.target) for m in report.proposed} == {
        ("decoder.head.0.weight", "decoder.heads.0.weight"),
        ("decoder.head.1.weight", "decoder.heads.1.weight"),
    }
    assert all(m.score >= 0.75 for m in report.proposed)
    assert not report.ok and sorted(report.unmatched_target) == ["decoder.heads.0.weight", "decoder.heads.1.weight"]

    applied = match_keys(source, TARGET, apply_proposed=True)
    assert applied.ok and applied.counts()["fuzzy"] == 2 and not applied.proposed


def test_fuzzy_never_crosses_layer_indices_or_shapes():
    target = {"blocks.1.norm.weight": (4,), "blocks.2.norm.weight": (4,), "blocks.3.norm.weight": (5,)}
    source = {"blocks.3.norms.weight": (4,)}  # index 3 exists only with another shape
    report = match_keys(source, target, apply_proposed=True)
    assert not report.matches and not report.proposed
    assert report.unmatched_source == ["blocks.3.norms.weight"]


def test_name_match_with_wrong_shape_is_an_error_not_a_skip():
    report = match_keys({"decoder.layer_norm.weight": (5,)}, {"decoder.layer_norm.weight": (4,)})
    assert not report.ok and not report.matches
    (error,) = report.shape_errors
    assert (error.source_shape, error.target_shape, error.kind) == ((5,), (4,), "exact")


def test_ambiguous_suffix_is_not_matched():
    target = {"a.x.y.weight": (3,), "b.x.y.weight": (3,)}
    report = match_keys({"c.x.y.weight": (3,)}, target)
    assert not report.matches and report.unmatched_source == ["c.x.y.weight"]


def test_optional_and_ignored_names():
    report = match_keys(
        {"w": (1,), "chroma.fbanks": (12, 3)}, {"w": (1,), "text.emb": (2,)}, optional=["text.emb"], ignore=[r"^chroma\."]
    )
    assert report.ok and report.left_optional == ["text.emb"] and report.ignored_source == ["chroma.fbanks"]
