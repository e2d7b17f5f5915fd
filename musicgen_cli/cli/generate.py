"""`mgen generate`: one prompt (or several takes) to audio files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from musicgen_cli import config
from musicgen_cli.cli.options import (
    CacheDirOpt,
    ClipOptions,
    JsonOpt,
    LongFormOptions,
    MachineOptions,
    ModelOptions,
    OfflineOpt,
    OutputOptions,
    SamplingOptions,
    console,
    err_console,
    reporter_for,
    uses,
)
from musicgen_cli.errors import MgenError
from musicgen_cli.jobs.outputs import out_target
from musicgen_cli.ui.panel import result_summary


def _resolve_prompt(prompt: Optional[str], prompt_file: Optional[Path], lyrics: Optional[Path]):
    """The text conditioning and the output name hint (lyrics title when lyrics are given)."""
    from musicgen_cli.engine.prompts import (
        LYRICS_NOTICE,
        fold_lyrics,
        read_lyrics,
        read_text_file,
    )
    from musicgen_cli.text import clean

    if prompt and prompt_file:
        raise MgenError("give the prompt as an argument or with --prompt-file, not both", "drop one of them")
    text = read_text_file(prompt_file, "prompt") if prompt_file else clean(prompt or "").strip()
    hint = text
    if lyrics:
        song = read_lyrics(lyrics)
        err_console.print(f"[yellow]note:[/] {LYRICS_NOTICE}")
        text, hint = fold_lyrics(text, song), song.title
    if not text.strip():
        raise MgenError("no prompt given", 'pass one: mgen generate "a calm lofi beat", or use --prompt-file')
    return text, hint


def _report(written: list, as_json: bool, quiet: bool) -> None:
    """What was written and what it cost: JSON, bare paths, or a line per file and a summary."""
    first = written[0].sidecar
    if as_json:
        timings = {k: v for k, v in first["timings_s"].items() if k != "load"}
        print(json.dumps({"files": [str(w.path) for w in written], "seed": first["seed"], "timings_s": timings,
                          "steps_per_s": first["steps_per_s"], "realtime_factor": first["realtime_factor"]}, indent=2))
        return
    if quiet:
        for w in written:
            print(w.path)
        return
    for w in written:
        console.print(f"[green]wrote[/] {w.path}  (+ {w.sidecar_path.name})", highlight=False)
    console.print(result_summary(first, len(written)), highlight=False)


def _note_clipping(written: list) -> None:
    """--normalize none/rms/loudness can clip: say so rather than hide it, with the fix that works."""
    for w in written:
        if w.clipped_samples:
            # rms and loudness clip at full scale after scaling (as audiocraft's do), whatever the
            # file stores; only `none` hands the samples past full scale to the file.
            keep = "; --subtype FLOAT keeps them" if w.sidecar["audio"].get("normalize") == "none" else ""
            err_console.print(f"[yellow]note:[/] {w.clipped_samples} samples of {w.path.name} were clipped at full scale "
                              f"(--normalize peak avoids it{keep})", highlight=False, soft_wrap=True)


def _note_speed(written: list) -> None:
    """A decode speed far from the plan's estimate is worth knowing (and measuring again)."""
    from musicgen_cli.planning.estimates import ESTIMATE_ERROR_SHOWN_PCT

    sidecar = written[0].sidecar if written else {}
    check = sidecar.get("speed_estimate")
    # A CPU plan without a probe is of a model too small for its weights to set the pace: its
    # figure is a bound, not an estimate worth a note.
    probed = sidecar.get("plan", {}).get("cpu_modes") or str(sidecar.get("device", "")).startswith("cuda")
    if check and probed and abs(check["error_pct"]) > ESTIMATE_ERROR_SHOWN_PCT:
        err_console.print(f"[yellow]note:[/] the plan expected {check['expected_steps_per_s']:.1f} decode steps/s, this run "
                          f"made {check['measured_steps_per_s']:.1f} ({check['error_pct']:+.0f} %); on a CPU, a "
                          "quiet run corrects the next estimate, and `mgen probe` measures again", highlight=False)


def _replayed(from_sidecar: Path, out: Optional[Path], fmt: Optional[str], overwrite: bool, machine: MachineOptions,
              cache_dir: Optional[Path]):
    """What `--from-sidecar` re-runs: the recorded prompt, model, settings and levels (the
    format may change with --format or an --out suffix), and the machine flags it was made with."""
    from dataclasses import replace

    from musicgen_cli.engine.audio import FORMATS, choose_format
    from musicgen_cli.jobs.replay import check_decoder, check_weights, read_replay
    from musicgen_cli.jobs.request import Request
    from musicgen_cli.store.manifest import load_manifest

    manifest = load_manifest(cache_dir)

    def known(name: str) -> bool:  # listed in this install's manifest (an unlisted repo id would mean a download)
        return name in manifest.entries or any((e.repo_id or "").lower() == name.lower() for e in manifest.entries.values())

    replay = read_replay(from_sidecar, known)
    if replay.note:
        err_console.print(f"note: {replay.note}", markup=False, highlight=False, soft_wrap=True)
    elif manifest.is_cached(entry := manifest.get(replay.model)):  # other weights are refused before loading
        check_weights(replay.fingerprint, replay.model, manifest.folder(entry))
    check_decoder(replay.decoder_sha256, replay.model, cache_dir)
    recorded = replay.options
    named = out is not None and out.suffix.lstrip(".").lower() in FORMATS  # else keep the recorded format
    chosen = choose_format(out, fmt) if fmt or named else recorded.format
    options = replace(recorded, format=chosen, subtype=recorded.subtype if chosen == recorded.format else None)
    request = Request(
        prompts=(replay.prompt,), settings=replay.settings, audio=options, model=replay.model, out=out, overwrite=overwrite,
        take=replay.sample_index, weights_sha256=replay.fingerprint,
    )
    plan = {**machine.plan_kwargs(), "dtype": replay.dtype, "quantize": replay.quantize}
    device = replay.device if machine.device == "auto" else machine.device
    if note := replay.draw_note(device):
        err_console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    return request, plan, replace(machine, device=device)


def _request(prompt: Optional[str], out: Optional[Path], overwrite: bool, *, model: ModelOptions, clip: ClipOptions,
             sampling: SamplingOptions, long_form: LongFormOptions, output: OutputOptions):
    """The Request the flags describe."""
    from musicgen_cli.jobs.request import Request

    clip_settings = clip.settings()
    long_settings, first_prompt = long_form.settings(clip_settings.pop("duration"))
    text, hint = _resolve_prompt(prompt or (None if clip.prompt_file else first_prompt), clip.prompt_file, clip.lyrics)
    settings = sampling.settings(**clip_settings, **long_settings)
    return Request(prompts=(text,), settings=settings, audio=output.options(), model=model.name(), out=out, name_hint=hint,
                   overwrite=overwrite)


def _on_server(url: str, request, model: ModelOptions, *, replay: bool, quiet: bool, as_json: bool) -> None:
    """The request generated by a running `mgen serve` and written here."""
    from musicgen_cli.cli.remote import generate_on_server

    return generate_on_server(url, request, model.size or model.model_key, replay=replay, quiet=quiet, as_json=as_json)


EXAMPLES = """Examples:

  mgen generate "lofi hip hop beat" --duration 8

  mgen generate --size medium -n 3 --seed 7 "a 30-second grand piano jazz trio"

  mgen generate --model-key melody --melody tune.wav "orchestral version"

  mgen generate -d 20 --normalize loudness --fade-out 3 --out song.mp3 "synthwave"

  mgen generate --from-sidecar song.json --out again.mp3

  mgen generate --segments piece.txt --ending outro
"""


@uses(model=ModelOptions, clip=ClipOptions, machine=MachineOptions, sampling=SamplingOptions, long_form=LongFormOptions,
      output=OutputOptions)
def generate_cmd(
    prompt: Optional[str] = typer.Argument(None, help="What to play, e.g. \"a 30-second grand piano jazz trio with bass and drums\"."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Output file; its suffix picks the format (default: output/<slug of the prompt>.<format>); a name ending in / is a folder, made if missing."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files (and their sidecars)."),
    from_sidecar: Optional[Path] = typer.Option(None, "--from-sidecar", help="Re-run the clip a sidecar .json describes (same model, prompt, seed, settings, levels)."),
    offline: bool = OfflineOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the output paths."),
    as_json: bool = JsonOpt,
    cache_dir: Optional[Path] = CacheDirOpt,
    server: Optional[str] = typer.Option(None, "--server", help="URL of a running `mgen serve` (default: MGEN_SERVER): it generates on its warm model, the files are written here."),
    *,
    model: ModelOptions, clip: ClipOptions, machine: MachineOptions, sampling: SamplingOptions, long_form: LongFormOptions,
    output: OutputOptions,
) -> None:
    """Generate music from a text prompt and write audio files with a JSON sidecar each."""
    from dataclasses import replace

    from musicgen_cli.jobs.request import validate
    from musicgen_cli.jobs.run import run

    model.name()  # --size and --model-key together are refused first
    if from_sidecar:
        request, plan_kwargs, machine = _replayed(from_sidecar, out_target(out), output.fmt, overwrite, machine, cache_dir)
    else:
        plan_kwargs = machine.plan_kwargs()
        request = _request(prompt, out_target(out), overwrite, model=model, clip=clip, sampling=sampling, long_form=long_form, output=output)
    request = validate(request)
    if url := server or config.server():
        return _on_server(url, request, model, replay=bool(from_sidecar), quiet=quiet, as_json=as_json)
    from musicgen_cli.engine.musicgen import load_model  # torch and the model code: after every check

    request = replace(request, extra={"torch_threads": machine.threads(), **request.extra})
    with reporter_for(quiet or as_json) as reporter:
        mg = load_model(request.model, cache_dir=cache_dir, settings=request.settings, machine=machine.machine(cache_dir),
                        download=not offline, reporter=reporter, prompts=request.prompts, **plan_kwargs)
        written = run(request, mg, reporter)
    _note_clipping(written)
    if not (quiet or as_json):
        _note_speed(written)
    _report(written, as_json, quiet)
