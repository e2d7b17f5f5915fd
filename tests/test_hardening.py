"""Bad inputs and faults through the real `mgen` entry point: one line each, nothing lost, nothing silently wrong.

Every case runs `cli.main()` (tests/cli_run.py) and checks the exit code, that stderr is one
`error:` line without a traceback, the words a user needs (the right flag, the fix), and what
is on disk afterwards. Cases marked `before_load` also prove the check came before any work:
the model cache stays empty (the tiny model builds itself on first use, so any loading would
leave it there). Faults (a full disk, Ctrl-C, a kill between a clip and its sidecar) are
injected by patching the write points.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf
from cli_run import ROOT, one_line_error, run_main

from musicgen_cli.engine import audio
from musicgen_cli.store.cache import READY_MARKER, mark_ready
from musicgen_cli.testing import ModelSpec, write_model_folder


@dataclass
class Ctx:
    tmp: Path
    cache: Path
    monkeypatch: pytest.MonkeyPatch
    out: Path = field(init=False)

    def __post_init__(self) -> None:
        self.out = self.tmp / "out"


@dataclass
class Case:
    id: str
    args: list[str]
    needles: tuple[str, ...] = ()  # words the error line must hold
    kind: str = "error"  # "error": one line; "ok": must succeed, and `after` checks it was done right
    absent: tuple[str, ...] = ()  # words it must not hold (a wrong flag name, a misleading reason)
    code: int = 2
    model: bool = False  # put the tiny model in the cache first
    before_load: bool = True  # the cache must stay empty: refused before anything loads
    setup: Callable[[Ctx], None] | None = None
    after: Callable[[Ctx], None] | None = None
    examples: tuple[str, ...] = ()  # which of the hardening examples this is


def gen(*extra: str, out: str = "{tmp}/out/a.wav") -> list[str]:
    return ["generate", "-m", "tiny-random", "-d", "0.3", "-q", "--out", out, *extra, "x"]


def batch(src: str = "{tmp}/items.jsonl", *extra: str) -> list[str]:
    return ["batch", src, "--out-dir", "{tmp}/out", "-m", "tiny-random", "-d", "0.3", "--quiet", *extra]


def lines(*items: dict | str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        text = "\n".join(i if isinstance(i, str) else json.dumps(i) for i in items)
        (ctx.tmp / "items.jsonl").write_text(text + "\n")

    return setup


def files(**contents: bytes | str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        for name, data in contents.items():
            path = ctx.tmp / name.replace("__", "/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data if isinstance(data, bytes) else data.encode())

    return setup


def wav(name: str, seconds: float = 0.5, rate: int = 32000) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        path = ctx.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, np.zeros(int(seconds * rate), np.float32), rate)

    return setup


def old_pair(ctx: Ctx) -> None:
    ctx.out.mkdir(parents=True, exist_ok=True)
    (ctx.out / "a.wav").write_bytes(b"old take")
    (ctx.out / "a.json").write_text('{"audio_file": "a.wav", "old": true}')


def old_pair_kept(ctx: Ctx) -> None:
    assert (ctx.out / "a.wav").read_bytes() == b"old take"
    assert json.loads((ctx.out / "a.json").read_text()) == {"audio_file": "a.wav", "old": True}
    assert sorted(p.name for p in ctx.out.iterdir()) == ["a.json", "a.wav"]  # no temporaries left


def nothing_written(ctx: Ctx) -> None:
    assert not ctx.out.exists() or not [p for p in ctx.out.rglob("*") if p.is_file()]


def fail_os_open(under: str, code: int) -> Callable[[Ctx], None]:
    """Every file created under tmp/`under` fails with `code` (a read-only or full file system)."""

    def setup(ctx: Ctx) -> None:
        real = os.open
        target = str(ctx.tmp / under)

        def fake(path, flags, *args, **kwargs):
            if str(path).startswith(target) and flags & os.O_CREAT:
                raise OSError(code, os.strerror(code), str(path))
            return real(path, flags, *args, **kwargs)

        (ctx.tmp / under).mkdir(parents=True, exist_ok=True)
        ctx.monkeypatch.setattr(os, "open", fake)

    return setup


def sidecar_write_fails(code: int) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        from musicgen_cli.jobs import pairs

        real = pairs._write_text

        def fake(path: Path, text: str) -> None:
            if path.suffix == ".json":
                raise OSError(code, os.strerror(code), str(path))
            real(path, text)

        old_pair(ctx)
        ctx.monkeypatch.setattr(pairs, "_write_text", fake)

    return setup


def sidecar_commit_interrupted(ctx: Ctx) -> None:
    from musicgen_cli.jobs import pairs

    real = pairs._commit

    def fake(tmp: Path, target: Path) -> None:
        if target.suffix == ".json":
            raise KeyboardInterrupt
        real(tmp, target)

    old_pair(ctx)
    ctx.monkeypatch.setattr(pairs, "_commit", fake)


def libsndfile_fails(free: int) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        from musicgen_cli.jobs import pairs

        def fake_write(*args, **kwargs):
            raise sf.LibsndfileError(2, "Error opening file: ")  # libsndfile's SF_ERR_SYSTEM: "System error."

        ctx.monkeypatch.setattr(sf, "write", fake_write)
        ctx.monkeypatch.setattr(pairs.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - free, free))

    return setup


def damage(name: str, how: Callable[[Path], None]) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        how(ctx.cache / "tiny-random" / name)

    return setup


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def not_ready(ctx: Ctx) -> None:
    assert not (ctx.cache / "tiny-random" / READY_MARKER).exists()  # so `mgen download` repairs it


def cache_is_a_file(ctx: Ctx) -> None:
    shutil.rmtree(ctx.cache)
    ctx.cache.write_text("not a folder")


def live_lock(ctx: Ctx) -> None:
    ctx.out.mkdir()
    (ctx.out / ".mgen-lock").write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    lines({"prompt": "a"})(ctx)


def lock_untouched(ctx: Ctx) -> None:
    assert json.loads((ctx.out / ".mgen-lock").read_text())["pid"] == os.getppid()
    assert sorted(p.name for p in ctx.out.iterdir()) == [".mgen-lock"]


def keyboard_interrupt_at_load(ctx: Ctx) -> None:
    import musicgen_cli.engine.musicgen as engine

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    ctx.monkeypatch.setattr(engine, "load_model", stop)


def gpu_out_of_memory(ctx: Ctx) -> None:
    """The decoder step runs out of CUDA memory (torch's own error type and message)."""
    import torch

    from musicgen_cli.decode import fastloop

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 8 GiB\nOf the allocated memory ...")

    ctx.monkeypatch.setattr(fastloop.Decoder, "_run", out_of_memory)


def logits_overflow(ctx: Ctx) -> None:
    """The decoder's logits turn NaN from the second step on, as a half-precision overflow makes them."""
    from musicgen_cli.decode import fastloop

    real = fastloop.Decoder._run

    def overflowing(self, hidden, attend):
        logits = real(self, hidden, attend)
        return logits * float("nan") if self.pos > 0 else logits

    ctx.monkeypatch.setattr(fastloop.Decoder, "_run", overflowing)


# -- things that must work and be right (the "silently wrong" class) --------------------------------


def wrote_inside_folder(ctx: Ctx) -> None:
    assert sorted(p.name for p in (ctx.tmp / "d").iterdir()) == ["x.json", "x.wav"]
    assert not (ctx.tmp / "d.wav").exists()


def wrote_flac(ctx: Ctx) -> None:
    assert sf.info(ctx.out / "a.flac").format == "FLAC" and not (ctx.out / "a.flac.wav").exists()
    assert json.loads((ctx.out / "a.json").read_text())["audio_file"] == "a.flac"


def mode_follows_umask(mask: int) -> Callable[[Ctx], None]:
    def after(ctx: Ctx) -> None:
        for name in ("a.wav", "a.json"):
            assert (ctx.out / name).stat().st_mode & 0o777 == 0o666 & ~mask, name

    return after


def with_umask(mask: int) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        os.umask(mask)  # the ctx fixture puts the old one back

    return setup


def unreadable(ctx: Ctx) -> None:
    """Opening the file is refused, as for a file of another user (root reads everything, so patch)."""
    wav("in.wav")(ctx)

    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    ctx.monkeypatch.setattr("musicgen_cli.engine.validate.open", refuse, raising=False)


def kept(name: str, data: bytes) -> Callable[[Ctx], None]:
    def after(ctx: Ctx) -> None:
        assert (ctx.tmp / name).read_bytes() == data

    return after


def overwritten(ctx: Ctx) -> None:
    assert (ctx.out / "a.wav").read_bytes() != b"old take" and sf.info(ctx.out / "a.wav").frames > 0
    assert json.loads((ctx.out / "a.json").read_text())["audio_file"] == "a.wav"


def symlinked_model(ctx: Ctx) -> None:
    elsewhere = ctx.tmp / "other-disk" / "tiny-random"
    elsewhere.parent.mkdir()
    shutil.move(str(ctx.cache / "tiny-random"), elsewhere)
    (ctx.cache / "tiny-random").symlink_to(elsewhere, target_is_directory=True)


def generated_with_symlink(ctx: Ctx) -> None:
    assert sf.info(ctx.out / "a.wav").frames > 0 and (ctx.cache / "tiny-random").is_symlink()


def stale_lock(ctx: Ctx) -> None:
    ctx.out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (ctx.out / ".mgen-lock").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    lines({"prompt": "a", "output": "a"})(ctx)


def stale_lock_taken_over(ctx: Ctx) -> None:
    assert sf.info(ctx.out / "a.wav").frames > 0 and not (ctx.out / ".mgen-lock").exists()
    (record,) = [json.loads(line) for line in (ctx.out / "manifest.jsonl").read_text().splitlines()]
    assert record["status"] == "ok"


def killed_run_leftovers(ctx: Ctx) -> None:
    """What a writer killed mid-commit leaves: a journal and both temporaries, complete."""
    from musicgen_cli.jobs import pairs

    ctx.out.mkdir()
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)
    token = f"{pairs.TAG}{pairs._HOST}-{dead}-abcd1234"
    (ctx.out / f".{token}.pair").write_text(json.dumps({"audio": "old.wav", "sidecar": "old.json", "step": "committing"}))
    sf.write(ctx.out / f".{token}.wav", np.zeros(320, np.float32), 32000)
    (ctx.out / f".{token}.json").write_text('{"audio": "old.wav"}')
    (ctx.out / f".{token}2.wav.part").write_bytes(b"half")  # a dead writer's torn temporary


def leftovers_finished(ctx: Ctx) -> None:
    names = sorted(p.name for p in ctx.out.iterdir())
    assert names == ["a.json", "a.wav", "old.json", "old.wav"], names
    assert json.loads((ctx.out / "old.json").read_text()) == {"audio": "old.wav"}


def long_prompt(ctx: Ctx) -> None:
    (ctx.tmp / "prompt.txt").write_text("jazz " * 20_000)  # 100 KB


def long_prompt_cut(ctx: Ctx) -> None:
    meta = json.loads((ctx.out / "a.json").read_text())
    assert len(meta["prompt"]) == 100_000 - 1 and sf.info(ctx.out / "a.wav").frames > 0


AIFF = "aiff"  # a suffix libsndfile knows but mgen writes no format for
LONG = "n" * 300


CASES = [
    # numbers: finite, in range, named by the right flag, before anything loads
    Case("seed beyond 64 bits", gen("--seed", str(2**70)), ("--seed", "0..2147483647"), examples=("--seed beyond 64 bits",)),
    Case("seed -1", gen("--seed", "-1"), ("--seed -1",), examples=("--seed -1",)),
    Case("seed 2**31", gen("--seed", str(2**31)), ("--seed",)),
    Case("temperature nan", gen("--temperature", "nan"), ("--temperature", "finite"), examples=("--temperature nan",)),
    Case("temperature inf", gen("--temperature", "inf"), ("--temperature", "finite")),
    Case("temperature 0", gen("--temperature", "0"), ("--temperature", "above 0")),
    Case("temperature -1", gen("--temperature", "-1"), ("--temperature",)),
    Case("top-k -5", gen("--top-k", "-5"), ("--top-k -5",), examples=("--top-k -5",)),
    Case("top-k not a number", gen("--top-k", "abc"), ("--top-k", "--help")),
    Case("top-p 5", gen("--top-p", "5"), ("--top-p 5", "between 0 and 1"), examples=("--top-p 5",)),
    Case("top-p -0.1", gen("--top-p", "-0.1"), ("--top-p",)),
    Case("top-p nan", gen("--top-p", "nan"), ("--top-p", "finite")),
    Case("guidance nan", gen("--guidance", "nan"), ("--guidance", "finite"), examples=("--guidance nan",)),
    Case("guidance -1", gen("--guidance", "-1"), ("--guidance",)),
    Case("guidance inf", gen("--guidance", "inf"), ("--guidance",)),
    Case("duration 0", gen("--duration", "0"), ("--duration",)),
    Case("duration nan", gen("--duration", "nan"), ("--duration", "finite")),
    Case("duration 4000", gen("--duration", "4000"), ("--duration",)),
    Case("num-samples 0", gen("-n", "0"), ("--num-samples",)),
    Case("window 0", gen("--window", "0"), ("--window", "window"), absent=("--duration",), examples=("--window 0",)),
    Case("window nan", gen("--window", "nan"), ("--window",)),
    Case("context >= window", gen("--context", "40"), ("--context", "window")),
    Case("context -1", gen("--context", "-1"), ("--context",)),
    Case("num-threads 0", gen("--num-threads", "0"), ("--num-threads",), absent=("--threads ",), examples=("--num-threads 0",)),
    Case("cpu-util-target 2", gen("--cpu-util-target", "2"), ("--cpu-util-target",)),
    Case("engine unknown", gen("--engine", "warp"), ("--engine", "fast")),
    Case("normalize bogus", gen("--normalize", "bogus"), ("--normalize", "peak"), examples=("--normalize bogus",)),
    Case("subtype wrong for wav", gen("--subtype", "VORBIS"), ("--subtype",)),
    Case("format unknown", gen("--format", "xyz"), ("--format", "unknown audio format")),
    # input files: readable and decodable, before loading
    Case("continue missing", gen("--continue", "{tmp}/nope.wav"), ("--continue", "does not exist"), examples=("missing --continue",)),
    Case("continue not audio", gen("--continue", "{tmp}/bad.wav"), ("--continue", "not audio"), absent=("check the path",),
         setup=files(**{"bad.wav": b"not audio at all"}), examples=("unreadable audio says check the path",)),
    Case("continue unreadable", gen("--continue", "{tmp}/in.wav"), ("in.wav", "permission denied"), setup=unreadable, code=1),
    Case("continue empty audio", gen("--continue", "{tmp}/e.wav"), ("--continue", "empty"), setup=wav("e.wav", 0.0)),
    Case("continue is a folder", gen("--continue", "{tmp}"), ("--continue", "folder")),
    Case("continue 4 kHz", gen("--continue", "{tmp}/lo.wav"), ("--continue", "sample rate"), setup=wav("lo.wav", 0.5, 4000)),
    Case("melody not audio", gen("--melody", "{tmp}/bad.wav"), ("--melody", "not audio"), setup=files(**{"bad.wav": b"\x00" * 64})),
    Case("prompt file missing", ["generate", "-m", "tiny-random", "--prompt-file", "{tmp}/nope.txt", "--out", "{tmp}/out/a.wav"],
         ("nope.txt",)),
    # outputs: suffix decides the format, nothing replaced unasked, the folder must take files
    Case("out with unknown suffix", gen(out="{tmp}/out/a." + AIFF), ("--out", "." + AIFF), examples=("--out a.mp3",)),
    Case("out suffix contradicts format", gen("--format", "flac"), ("--format", "contradicts")),
    Case("out exists", gen(), ("already exists", "--overwrite"), setup=old_pair, after=old_pair_kept,
         examples=("existing a.wav/a.json overwritten",)),
    Case("out's sidecar exists", gen(), ("a.json", "already exists", "--overwrite"),
         setup=files(**{"out__a.json": "{}"}), after=kept("out/a.json", b"{}")),
    Case("sidecar of another take", gen("--overwrite", out="{tmp}/out/a.flac"), ("belongs to a.wav",), absent=("--overwrite",),
         setup=old_pair, after=old_pair_kept),
    Case("out under a file", gen(out="{tmp}/f/a.wav"), ("not a folder",), setup=files(f=b"x"), code=1),
    Case("out on read-only file system", gen(out="{tmp}/ro/a.wav"), ("read-only",), setup=fail_os_open("ro", errno.EROFS), code=1,
         examples=("read-only --out fails after generating",)),
    Case("out not permitted", gen(out="{tmp}/locked/a.wav"), ("permission denied",), setup=fail_os_open("locked", errno.EACCES), code=1),
    Case("out name too long", gen(out="{tmp}/out/" + LONG + ".wav"), ("--out", "too long")),
    Case("disk full while writing the clip", gen(), ("no space left",), model=True, before_load=False,
         setup=libsndfile_fails(0), after=nothing_written, code=1, examples=("full disk: LibsndfileError",)),
    Case("libsndfile system error, space left", gen(), ("libsndfile", "System error"), model=True, before_load=False,
         setup=libsndfile_fails(10**9), after=nothing_written, code=1),
    Case("disk full between clip and sidecar", gen("--overwrite"), ("no space left",), model=True, before_load=False,
         setup=sidecar_write_fails(errno.ENOSPC), after=old_pair_kept, code=1, examples=("disk fills between clip and sidecar",)),
    Case("Ctrl-C between clip and sidecar", gen("--overwrite"), ("interrupted",), model=True, before_load=False,
         setup=sidecar_commit_interrupted, after=old_pair_kept, code=130),
    Case("CUDA out of memory while generating", gen(), ("ran out of memory", "2.00 GiB", "--max-vram", "--duration", "--num-samples"),
         absent=("Of the allocated",), model=True, before_load=False, setup=gpu_out_of_memory, after=nothing_written, code=1),
    Case("half-precision overflow", gen("--dtype", "bfloat16"), ("NaN or infinite", "step 2", "bfloat16", "--dtype float32"),
         model=True, before_load=False, setup=logits_overflow, after=nothing_written),
    Case("Ctrl-C while loading", gen(), ("interrupted",), setup=keyboard_interrupt_at_load, code=130, after=nothing_written),
    # the model cache
    Case("MGEN_CACHE_DIR is a file", gen(), ("is a file",), setup=cache_is_a_file, before_load=False, examples=("MGEN_CACHE_DIR to a file",)),
    Case("--cache-dir is a file", [*gen()[:-1], "--cache-dir", "{tmp}/f", "x"], ("--cache-dir", "is a file"), setup=files(f=b"x")),
    Case("models with the cache a file", ["models"], ("is a file",), setup=cache_is_a_file, before_load=False,
         examples=("mgen models with cache a file",)),
    Case("truncated model.safetensors", gen(), ("model.safetensors", "truncated", "mgen download tiny-random"), model=True,
         before_load=False, setup=damage("model.safetensors", truncate), after=not_ready, code=2, examples=("truncated model.safetensors",)),
    Case("config.json not JSON", gen(), ("config.json is not JSON", "mgen download tiny-random"), model=True, before_load=False,
         setup=damage("config.json", lambda p: p.write_text("{not json")), after=not_ready, examples=("config.json not JSON",)),
    Case("malformed repo id", ["download", "facebook/.."], ("not a valid repo id",), absent=("endpoint", "reach"),
         examples=("repo id facebook/..",)),
    Case("malformed repo id to generate", ["generate", "-q", "-m", "facebook/..", "x", "--out", "{tmp}/out/a.wav"], ("not a valid repo id",)),
    Case("import-audiocraft random bytes", ["import-audiocraft", "{tmp}/ckpt", "--key", "x", "--no-check"],
         ("state_dict.bin", "not a torch checkpoint"),
         setup=files(**{"ckpt__state_dict.bin": os.urandom(4000), "ckpt__compression_state_dict.bin": os.urandom(4000)}),
         examples=("import-audiocraft random bytes",)),
    Case("unknown command", ["generat"], ("generat", "--help")),
    # batch: every line checked before anything loads
    Case("batch Infinity", batch(), ("line 1", "Infinity"), setup=lines('{"prompt": "a", "duration": Infinity}'), examples=("JSONL Infinity",)),
    Case("batch -Infinity", batch(), ("line 2", "-Infinity"), setup=lines({"prompt": "a"}, '{"prompt": "b", "temperature": -Infinity}')),
    Case("batch NaN", batch(), ("NaN",), setup=lines('{"prompt": "a", "top_p": NaN}')),
    Case("batch top_k -5", batch(), ("line 1", "top_k -5"), setup=lines({"prompt": "a", "top_k": -5}), examples=("JSONL top_k -5",)),
    Case("batch seed 2**40", batch(), ("line 1", "seed"), setup=lines({"prompt": "a", "seed": 2**40})),
    Case("batch -N suffix collision", batch(), ("x-1.wav", "line 1"),
         setup=lines({"prompt": "a", "output": "x", "num_samples": 2}, {"prompt": "b", "output": "x-1"}),
         examples=("num_samples 2 next to x-1",)),
    Case("batch name in the state folder", batch(), (".mgen-batch",), setup=lines({"prompt": "a", "output": ".mgen-batch/x"}),
         examples=("output .mgen-batch/x",)),
    Case("batch name too long", batch(), ("too long",), setup=lines({"prompt": "a", "output": LONG}), examples=("300-character name",)),
    Case("batch name escapes", batch(), ("escapes",), setup=lines({"prompt": "a", "output": "../x"})),
    Case("batch continuation missing", batch(), ("line 1", "continuation"), setup=lines({"prompt": "a", "continuation": "nope.wav"})),
    Case("batch file missing", batch("{tmp}/nope.txt"), ("nope.txt",)),
    Case("batch --seed -1", batch("{tmp}/items.jsonl", "--seed", "-1"), ("--seed",), setup=lines({"prompt": "a"})),
    Case("batch --top-k -5", batch("{tmp}/items.jsonl", "--top-k", "-5"), ("--top-k",), setup=lines({"prompt": "a"})),
    Case("batch --normalize bogus", batch("{tmp}/items.jsonl", "--normalize", "bogus"), ("--normalize",), setup=lines({"prompt": "a"})),
    Case("batch --out-dir is a file", ["batch", "{tmp}/items.jsonl", "--out-dir", "{tmp}/f", "-m", "tiny-random"], ("--out-dir", "is a file"),
         setup=lambda c: (files(f=b"x")(c), lines({"prompt": "a"})(c)), examples=("--out-dir to a file",)),
    Case("batch --out-dir in use", batch(), ("in use", "pid", socket.gethostname()), setup=live_lock,
         after=lock_untouched,
         examples=("two batch runs into one --out-dir",)),
    # test-suite shares the validator
    Case("test-suite seed -1", ["test-suite", "--quick", "--only", "small", "--out-dir", "{tmp}/out", "--seed", "-1"], ("--seed",)),
    Case("test-suite output exists", ["test-suite", "--quick", "--only", "small", "--out-dir", "{tmp}/out"],
         ("out_small.wav", "--overwrite"), setup=files(**{"out__out_small.wav": b"old"}), after=kept("out/out_small.wav", b"old")),
    # must work, and be right
    Case("out is an existing folder", gen(out="{tmp}/d"), kind="ok", model=True, setup=lambda c: (c.tmp / "d").mkdir(),
         after=wrote_inside_folder, examples=("--out d writes d.wav",)),
    Case("out suffix picks the format", gen(out="{tmp}/out/a.flac"), kind="ok", model=True, after=wrote_flac),
    Case("umask 022", gen(), kind="ok", model=True, setup=with_umask(0o022), after=mode_follows_umask(0o022),
         examples=("mode 0600 whatever the umask",)),
    Case("umask 077", gen(), kind="ok", model=True, setup=with_umask(0o077), after=mode_follows_umask(0o077)),
    Case("overwrite allowed", gen("--overwrite"), kind="ok", model=True, setup=old_pair, after=overwritten),
    Case("model folder is a symlink", gen(), kind="ok", model=True, setup=symlinked_model, after=generated_with_symlink,
         examples=("symlinked model folder",)),
    Case("stale lock of a dead run", batch(), kind="ok", model=True, setup=stale_lock, after=stale_lock_taken_over),
    Case("leftovers of a killed writer", gen(), kind="ok", model=True, setup=killed_run_leftovers, after=leftovers_finished),
    Case("100 KB prompt", ["generate", "-m", "tiny-random", "-d", "0.3", "--prompt-file", "{tmp}/prompt.txt", "--out", "{tmp}/out/a.wav"],
         kind="ok", model=True, setup=long_prompt, after=long_prompt_cut, examples=("100 KB prompt",)),
]


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hardening") / "tiny-random"
    write_model_folder(folder, ModelSpec(variant="mono"))
    return folder


@pytest.fixture()
def ctx(tmp_path, cache_dir, monkeypatch) -> Ctx:
    monkeypatch.chdir(tmp_path)  # generate's default output/ and the suite's lyrics lookup stay in here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing here may reach a network
    old_mask = os.umask(0o022)
    os.umask(old_mask)
    yield Ctx(tmp_path, cache_dir, monkeypatch)
    os.umask(old_mask)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_or_fault(case: Case, ctx: Ctx, tiny_folder, capsys):
    if case.id == "out with unknown suffix" and AIFF in audio.FORMATS:
        pytest.skip("aiff became a format")
    if case.model:
        shutil.copytree(tiny_folder, ctx.cache / "tiny-random")
        mark_ready(ctx.cache / "tiny-random", {"key": "tiny-random", "random_weights": True, "builder": "mono"})
    if case.setup:
        case.setup(ctx)
    args = [a.format(tmp=ctx.tmp, cache=ctx.cache) for a in case.args]
    result = run_main(capsys, *args)
    assert "Traceback" not in result.stderr + result.stdout
    if case.kind == "ok":
        assert result.returncode == 0, result.stderr
    else:
        line = one_line_error(result)
        assert result.returncode == case.code, line
        for needle in case.needles:
            assert needle in line, (needle, line)
        for word in case.absent:
            assert word not in line, (word, line)
    if case.before_load and not case.model:
        assert not ctx.cache.is_dir() or not any(ctx.cache.iterdir()), "refused only after something loaded"
    if case.after:
        case.after(ctx)
    elif case.kind == "error":
        nothing_written(ctx)


def test_the_table_covers_issue_14():
    """At least 50 inputs and faults, every example of the issue among them."""
    examples = {e for case in CASES for e in case.examples}
    assert len(CASES) >= 50
    assert len(examples) >= 30, sorted(examples)


def test_debug_shows_the_traceback(tmp_path, cache_dir):
    from cli_run import run_subprocess

    quiet = run_subprocess("generate", "--top-k", "-5", "x", MGEN_CACHE_DIR=str(cache_dir))
    loud = run_subprocess("generate", "--top-k", "-5", "x", MGEN_CACHE_DIR=str(cache_dir), MGEN_DEBUG="1")
    assert "--top-k -5" in one_line_error(quiet)
    assert loud.returncode != 0 and "Traceback" in loud.stderr and "ValidationError" in loud.stderr


KILL_AT_SIDECAR = """
import os, sys
from musicgen_cli.jobs import pairs
real = pairs._commit
def commit(tmp, target):
    if target.suffix == ".json":
        os._exit(137)  # killed after the clip moved in, before its sidecar did
    real(tmp, target)
pairs._commit = commit
sys.argv = ["mgen", *sys.argv[1:]]
from musicgen_cli.cli.app import main
main()
"""


def test_kill_between_clip_and_sidecar_leaves_a_pair_after_the_next_run(tmp_path, cache_dir, tiny_folder):
    """A reader never meets the new clip with the old sidecar; the next run completes the new pair."""
    shutil.copytree(tiny_folder, cache_dir / "tiny-random")
    mark_ready(cache_dir / "tiny-random", {"key": "tiny-random", "random_weights": True, "builder": "mono"})
    out = tmp_path / "out"
    ctx = Ctx(tmp_path, cache_dir, None)
    old_pair(ctx)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MGEN_CACHE_DIR": str(cache_dir)}
    args = ["-m", "tiny-random", "-d", "0.3", "--seed", "5", "--overwrite", "--json"]
    killed = subprocess.run([sys.executable, "-c", KILL_AT_SIDECAR, "generate", *args, "--out", str(out / "a.wav"), "x"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == 137, killed.stderr
    assert not (out / "a.json").exists()  # the old sidecar went before the new clip came
    assert sf.info(out / "a.wav").frames > 0

    again = subprocess.run([sys.executable, "-m", "musicgen_cli", "generate", *args, "--out", str(out / "b.wav"), "y"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    meta = json.loads((out / "a.json").read_text())
    assert meta["audio_file"] == "a.wav" and meta["prompt"] == "x" and meta["seed"] == 5
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a.wav", "b.json", "b.wav"]


def test_second_batch_run_is_refused_while_the_first_holds_the_folder(tmp_path, cache_dir):
    from musicgen_cli.errors import Locked
    from musicgen_cli.jobs.lock import FolderLock

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".mgen-lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
        with pytest.raises(Locked, match=f"pid {holder.pid} on {socket.gethostname()}"):
            FolderLock(out).acquire()
    finally:
        holder.kill()
        holder.wait()
    with FolderLock(out) as lock:  # the holder is gone: its lock is taken over
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not (out / ".mgen-lock").exists()


def test_rerun_with_other_settings_says_so_instead_of_settled(tmp_path, cache_dir, tiny_folder, capsys):
    shutil.copytree(tiny_folder, cache_dir / "tiny-random")
    mark_ready(cache_dir / "tiny-random", {"key": "tiny-random", "random_weights": True, "builder": "mono"})
    src = tmp_path / "p.txt"
    src.write_text("jazz\n")
    out = tmp_path / "out"
    base = ["batch", str(src), "--out-dir", str(out), "-m", "tiny-random", "--quiet"]
    assert run_main(capsys, *base, "-d", "0.3").returncode == 0
    stamp = {p.name: p.read_bytes() for p in out.glob("*.*")}

    changed = run_main(capsys, *base, "-d", "0.4")
    line = one_line_error(changed)
    assert "made with duration 0.3 (now 0.4)" in line and "--overwrite" in line
    assert {p.name: p.read_bytes() for p in out.glob("*.*")} == stamp  # nothing replaced, manifest untouched

    assert run_main(capsys, *base, "-d", "0.3").returncode == 0  # the same settings: settled, nothing rewritten
    assert {p.name: p.read_bytes() for p in out.glob("*.wav")} == {k: v for k, v in stamp.items() if k.endswith(".wav")}
    replaced = run_main(capsys, *base, "-d", "0.4", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads((out / "0001-jazz.json").read_text())["settings"]["duration"] == 0.4


def test_long_prompts_are_cut_with_one_warning_through_the_reporter(tiny_folder):
    from musicgen_cli.engine.musicgen import GenerateSettings, load_model
    from musicgen_cli.errors import ValidationError
    from musicgen_cli.planning.hardware import probe, simulate

    class Messages:
        def __init__(self) -> None:
            self.lines: list[tuple[str, str]] = []

        def phase(self, name: str, detail: str = "") -> None:
            pass

        def progress(self, update) -> None:
            pass

        def message(self, text: str, level: str = "info") -> None:
            self.lines.append((level, text))

    reporter = Messages()
    mg = load_model(tiny_folder, machine=simulate(probe(), no_gpu=True), reporter=reporter)
    reporter.lines.clear()
    ids, mask = mg.tokenize(["jazz " * 20_000, "short"])
    assert ids.shape == mask.shape == (2, 512)
    assert [level for level, _ in reporter.lines] == ["warning"] and "512 tokens" in reporter.lines[0][1]
    reporter.lines.clear()
    assert mg.tokenize(["short"])[0].shape[-1] < 10 and reporter.lines == []
    with pytest.raises(ValidationError, match="top_k -5"):  # the Python API shares the validator
        mg.generate("x", GenerateSettings(duration=0.2, top_k=-5))
