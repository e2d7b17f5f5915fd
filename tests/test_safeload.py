"""Weights-only checkpoint reading and the configs audiocraft stores inside its files."""

from __future__ import annotations

import pytest
import torch

from musicgen_cli.errors import MgenError
from musicgen_cli.store.safeload import config_value, load_torch_file, plain_config

CFG = {
    "sample_rate": 32000,
    "channels": 1,
    "encodec": {"sample_rate": "${sample_rate}", "causal": False},
    "seanet": {"ratios": [8, 5, 4, 4], "causal": "${encodec.causal}", "norm": "weight_norm", "lstm": 2},
    "transformer_lm": {"dim": 1024, "layer_scale": None, "activation": "gelu", "dropout": 0.1},
}


def test_omegaconf_dictconfig_reads_without_omegaconf_classes(tmp_path):
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create(CFG)
    omegaconf.OmegaConf.set_struct(cfg, True)  # Hydra configs are struct-flagged
    torch.save({"best_state": {"w": torch.ones(2)}, "xp.cfg": cfg}, tmp_path / "f.bin")
    pkg = load_torch_file(tmp_path / "f.bin")
    assert plain_config(pkg["xp.cfg"]) == omegaconf.OmegaConf.to_container(cfg, resolve=False)
    assert torch.equal(pkg["best_state"]["w"], torch.ones(2))


def test_yaml_config_and_interpolations():
    import yaml

    cfg = plain_config(yaml.safe_dump(CFG))
    assert cfg == CFG
    assert config_value(cfg, "encodec.sample_rate") == 32000
    assert config_value(cfg, "seanet.causal") is False
    assert config_value(cfg, "seanet.missing", "dflt") == "dflt"
    assert config_value({"a": "${b}", "b": "${a}"}, "a") == "${a}"  # a cycle stops, never loops


def test_non_mapping_config_is_refused():
    with pytest.raises(MgenError, match="not a mapping"):
        plain_config("- just\n- a list\n")


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(MgenError, match="does not exist"):
        load_torch_file(tmp_path / "nope.bin")
