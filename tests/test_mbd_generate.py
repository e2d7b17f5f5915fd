"""`--decoder mbd` end to end on the tiny-random models: a random-weight MultiBand Diffusion is
built on first use, the clip and sidecar record it, --from-sidecar replays it byte for byte,
stereo decodes each channel, and a bad decoder name stops before anything loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from cli_run import one_line_error, run_main

from musicgen_cli.engine import mbd
from musicgen_cli.errors import ModelNotFound


def test_generate_with_mbd_writes_records_and_replays(cache_dir, tmp_path, capsys, one_torch_thread):
    first = tmp_path / "mbd.wav"
    args = ["generate", "-m", "tiny-random", "--decoder", "mbd", "-d", "0.4", "--seed", "5", "--out", str(first), "-q", "lofi beat"]
    assert run_main(capsys, *args).returncode == 0
    assert (cache_dir / mbd.RANDOM_FOLDER / mbd.CHECKPOINT_NAME).is_file()  # built on first use, no download
    meta = json.loads(first.with_suffix(".json").read_text())
    assert meta["settings"]["decoder"] == "mbd"
    decoder = meta["decoder"]
    assert decoder["name"] == "mbd" and decoder["bands"] == 4 and decoder["eq_bands"] == 32
    assert decoder["weights_sha256"] == mbd.file_digest(cache_dir / mbd.RANDOM_FOLDER / mbd.CHECKPOINT_NAME)
    assert decoder["schedule"]["steps"] == list(mbd.DEFAULT_STEPS) and decoder["schedule"]["beta_exp"] == 7.5
    audio, rate = sf.read(first)
    assert rate == 32000 and audio.shape == (round(0.4 * 32000),)

    again = tmp_path / "again.wav"
    assert run_main(capsys, "generate", "--from-sidecar", str(first.with_suffix(".json")), "--out", str(again), "-q").returncode == 0
    assert again.read_bytes() == first.read_bytes()

    plain = tmp_path / "encodec.wav"
    assert run_main(capsys, *[a if a != str(first) else str(plain) for a in args if a not in ("--decoder", "mbd")]).returncode == 0
    assert json.loads(plain.with_suffix(".json").read_text())["decoder"] == {"name": "encodec"}
    assert not np.array_equal(sf.read(plain)[0], audio)  # the same codes, another decoder


def test_stereo_decodes_each_channel(tiny_models, cache_dir, one_torch_thread):
    import torch

    from musicgen_cli.engine.musicgen import load_model
    from musicgen_cli.engine.settings import GenerateSettings
    from musicgen_cli.planning.hardware import probe, simulate

    settings = GenerateSettings(duration=0.3, seed=2, decoder="mbd")
    mg = load_model("tiny-random-stereo", cache_dir=cache_dir, settings=settings, machine=simulate(probe(cache_dir), no_gpu=True))
    result = mg.generate("jazz", settings)
    clip = result.clips[0]
    assert clip.shape == (2, round(0.3 * 32000)) and not np.array_equal(clip[0], clip[1])
    # the left channel alone: its codebooks (even indices), decoded as a mono clip with the same noise
    left_codes = result.codes[:, ::2]
    left_ref = mg.model.audio_encoder.decode(left_codes[None], [None]).audio_values
    draw = mbd.noise_source(torch.Generator().manual_seed(2))
    left = mbd.decode_mono(mg.diffusion, mg.model.audio_encoder, left_codes, left_ref, draw)
    assert np.allclose(clip[0], left[0, 0, : clip.shape[-1]].numpy(), atol=1e-6)
    assert result.decoder["name"] == "mbd"


def test_unknown_decoder_is_refused_before_loading(cache_dir, tmp_path, capsys):
    line = one_line_error(run_main(capsys, "generate", "-m", "tiny-random", "--decoder", "hifigan", "--out", str(tmp_path / "x.wav"), "x"))
    assert "decoder" in line and "encodec, mbd" in line
    assert not (cache_dir / "tiny-random").exists()  # nothing was built or loaded


def test_download_mbd_fetches_only_the_musicgen_checkpoint(cache_dir, tmp_path, capsys, monkeypatch):
    from fake_hub import FakeHub, FakeHubServer, FakeRepo
    from huggingface_hub import constants

    from musicgen_cli.store.cache import read_marker

    checkpoint = mbd.write_checkpoint(tmp_path / "src" / mbd.CHECKPOINT_NAME, mbd.band_configs(unet=mbd.TINY_UNET))
    data = checkpoint.read_bytes()
    fake = FakeHub()
    fake.add(FakeRepo("facebook/multiband-diffusion", {mbd.CHECKPOINT_NAME: data, "mbd_comp_4.pt": b"speech" * 100}, "c" * 40))
    with FakeHubServer(fake) as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
        for name in ("HF_HUB_OFFLINE", "HF_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        result = run_main(capsys, "download", "mbd")
        assert result.returncode == 0, result.stderr
        assert not [r for r in hub.requests("GET", "/resolve/") if r[1].endswith("mbd_comp_4.pt")]
    folder = cache_dir / "multiband-diffusion"
    assert (folder / mbd.CHECKPOINT_NAME).read_bytes() == data
    assert set(read_marker(folder)["files"]) == {mbd.CHECKPOINT_NAME}
    assert len(mbd.load_checkpoint(folder / mbd.CHECKPOINT_NAME).bands) == 4
    line = one_line_error(run_main(capsys, "generate", "-m", "mbd", "--out", str(tmp_path / "x.wav"), "x"))
    assert "not a MusicGen model" in line and "--decoder mbd" in line


def test_missing_mbd_weights_name_the_download_before_loading(cache_dir, tmp_path, capsys, monkeypatch):
    # a plain model folder (no manifest entry, not random) takes the released checkpoint,
    # which is not in the (empty) default cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFound, match="mgen download mbd"):
        mbd.checkpoint_path(None, tmp_path, download=False)


def test_replay_refuses_other_mbd_weights_before_loading(cache_dir, tmp_path, capsys, monkeypatch, one_torch_thread):
    from musicgen_cli.engine import musicgen
    from musicgen_cli.store.cache import hash_files, mark_ready

    first = tmp_path / "a.wav"
    args = ["generate", "-m", "tiny-random", "--decoder", "mbd", "-d", "0.3", "--seed", "3", "--out", str(first), "-q", "x"]
    assert run_main(capsys, *args).returncode == 0
    # another random MBD in the same place, recorded as built: the LM is the same, the decoder is not
    folder = cache_dir / mbd.RANDOM_FOLDER
    mbd.write_checkpoint(folder / mbd.CHECKPOINT_NAME, mbd.band_configs(unet=mbd.TINY_UNET), seed=1)
    mark_ready(folder, {"key": mbd.RANDOM_FOLDER, "random_weights": True, "files": hash_files(folder)})

    def no_loading(*args, **kwargs):
        raise AssertionError("the model loaded before the decoder's weights were checked")

    monkeypatch.setattr(musicgen, "load_model", no_loading)
    line = one_line_error(run_main(capsys, "generate", "--from-sidecar", str(first.with_suffix(".json")), "--out", str(tmp_path / "b.wav")))
    assert "MultiBand Diffusion weights" in line and "not the ones that decoded this clip" in line and mbd.CHECKPOINT_NAME in line
    assert not (tmp_path / "b.wav").exists()


def test_batch_checks_the_mbd_checkpoint_before_any_model_loads(tiny_models, cache_dir, tmp_path, capsys, monkeypatch):
    # a plain model folder decodes with the released checkpoint, which this (offline) cache lacks
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("lofi beat\n")
    out = tmp_path / "out"
    line = one_line_error(run_main(capsys, "batch", str(prompts), "--out-dir", str(out), "-m", str(tiny_models["mono"]),
                                   "--decoder", "mbd", "-d", "0.3", "--offline", "-q"))
    assert "MultiBand Diffusion" in line and "mgen download mbd" in line
    assert not (out / "manifest.jsonl").exists()  # no item was started, so none is recorded as failed


def test_test_suite_checks_the_mbd_checkpoint_before_any_job(tiny_models, cache_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "suite"
    line = one_line_error(run_main(capsys, "test-suite", "--only", "small", "--quick", "--model-key", str(tiny_models["mono"]),
                                   "--decoder", "mbd", "--out-dir", str(out)))
    assert "MultiBand Diffusion" in line and "mgen download mbd" in line
    assert not (out / "report.json").exists()  # not a skipped job in a report: the run stopped first
