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
    says: tuple[str, ...] = ()  # "ok" cases: words the output must hold
    never_says: tuple[str, ...] = ()  # "ok" cases: words it must not hold (advice that is wrong)


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


# -- Hardening II: the inputs people actually have --------------------------------------------


def raw(data: bytes) -> str:
    """An argument as the OS hands over bytes that are not UTF-8 (Python's surrogateescape)."""
    return data.decode("utf-8", "surrogateescape")


def env(**values: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        for name, value in values.items():
            ctx.monkeypatch.setenv(name, value)

    return setup


def both(*setups: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        for one in setups:
            one(ctx)

    return setup


def sidecar_says(ctx: Ctx, name: str = "a.json") -> dict:
    return json.loads((ctx.out / name).read_text())


def prompt_is(expected: str, name: str = "a.json") -> Callable[[Ctx], None]:
    def after(ctx: Ctx) -> None:
        assert sidecar_says(ctx, name)["prompt"] == expected

    return after


def batch_prompts_are(*expected: str) -> Callable[[Ctx], None]:
    def after(ctx: Ctx) -> None:
        records = [json.loads(line) for line in (ctx.out / "manifest.jsonl").read_text().splitlines()]
        assert all(r["status"] == "ok" for r in records), records
        prompts = [json.loads((ctx.out / f"{r['id']}.json").read_text())["prompt"] for r in records]
        assert prompts == list(expected), prompts

    return after


def piece_made(sections: list[str]) -> Callable[[Ctx], None]:
    def after(ctx: Ctx) -> None:
        meta = sidecar_says(ctx)
        assert [s["prompt"] for s in meta["composition"]["sections"]] == sections, meta["composition"]
        assert sf.info(ctx.out / "a.wav").frames > 0

    return after


def fifo(name: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        path = ctx.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)

    return setup


def unix_socket(name: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        path = ctx.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()  # the socket file stays

    return setup


def link_loop(name: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        path = ctx.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(path.name + ".b", path)
        os.symlink(path.name, path.with_name(path.name + ".b"))

    return setup


def dev_untouched(name: str) -> Callable[[Ctx], None]:
    def after(ctx: Ctx) -> None:
        assert not Path(f"/dev/{name}.wav").exists() and not Path(f"/dev/{name}.json").exists()

    return after


def wrote_in(folder: str, stem: str = "x") -> Callable[[Ctx], None]:
    def after(ctx: Ctx) -> None:
        assert sorted(p.name for p in (ctx.tmp / folder).iterdir()) == [f"{stem}.json", f"{stem}.wav"]
        assert not (ctx.tmp / f"{folder}.wav").exists()

    return after


def float_wav(name: str, bad_at: int | None, value: float = float("nan"), seconds: float = 0.5) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        wave = np.zeros(int(seconds * 32000), np.float32)
        if bad_at is not None:
            wave[bad_at] = value
        sf.write(ctx.tmp / name, wave, 32000, subtype="FLOAT")

    return setup


GOOD_SIDECAR = {
    "prompt": "x", "model": {"key": "tiny-random", "repo_id": None, "folder": None, "weights_fingerprint": None},
    "seed": 5, "sample_index": 0, "settings": {"duration": 0.3, "num_samples": 1}, "audio": {},
}


def sidecar_file(change: dict | None = None, text: str | bytes | None = None, drop: tuple[str, ...] = ()) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        meta = {k: v for k, v in {**GOOD_SIDECAR, **(change or {})}.items() if k not in drop}
        data = text if text is not None else json.dumps(meta)
        (ctx.tmp / "take.json").write_bytes(data if isinstance(data, bytes) else data.encode())

    return setup


def replay(*extra: str) -> list[str]:
    return ["generate", "-q", "--from-sidecar", "{tmp}/take.json", "--out", "{tmp}/out/a.wav", *extra]


ESC = "\x1b[31mred\x1b[0m \x1b]0;owned\x07jazz"  # colour codes and a window-title sequence around a prompt

CASES += [
    # text as it arrives: one decoder for argv, files and stdin
    Case("prompt argument not UTF-8", gen(out="{tmp}/out/a.wav")[:-1] + [raw(b"caf\xe9 jazz")], ("not UTF-8", "byte 0xe9", "byte offset 3"),
         examples=("invalid UTF-8 prompt in argv",)),
    Case("--out not UTF-8", gen(out=raw(b"{tmp}/out/\xff.wav")), ("not UTF-8", "byte 0xff"), examples=("invalid UTF-8 --out",)),
    Case("--continue not UTF-8", gen("--continue", raw(b"{tmp}/\xfe.wav")), ("not UTF-8", "0xfe")),
    Case("batch file name not UTF-8", batch(raw(b"{tmp}/\xff.txt")), ("not UTF-8",)),
    Case("prompt file with a BOM", ["generate", "-m", "tiny-random", "-d", "0.3", "-q", "--out", "{tmp}/out/a.wav", "--prompt-file", "{tmp}/p.txt"],
         kind="ok", model=True, setup=files(**{"p.txt": b"\xef\xbb\xbfjazz trio\r\n"}), after=prompt_is("jazz trio"),
         examples=("Notepad BOM in a prompt file",)),
    Case("prompt file not UTF-8", ["generate", "-m", "tiny-random", "-q", "--out", "{tmp}/out/a.wav", "--prompt-file", "{tmp}/p.txt"],
         ("p.txt", "not UTF-8", "byte 0xe9", "line 2"), setup=files(**{"p.txt": b"jazz\ncaf\xe9\n"})),
    Case("prompt file UTF-16", ["generate", "-m", "tiny-random", "-q", "--out", "{tmp}/out/a.wav", "--prompt-file", "{tmp}/p.txt"],
         ("not UTF-8", "byte offset 0"), setup=files(**{"p.txt": "jazz".encode("utf-16")})),
    Case("prompt file is a folder", ["generate", "-m", "tiny-random", "-q", "--out", "{tmp}/out/a.wav", "--prompt-file", "{tmp}/d"],
         ("prompt file", "is a folder"), setup=lambda c: (c.tmp / "d").mkdir()),
    Case("prompt file only a BOM", ["generate", "-m", "tiny-random", "-q", "--out", "{tmp}/out/a.wav", "--prompt-file", "{tmp}/p.txt"],
         ("empty",), setup=files(**{"p.txt": b"\xef\xbb\xbf\r\n"})),
    Case("prompt file of 17 MiB", ["generate", "-m", "tiny-random", "-q", "--out", "{tmp}/out/a.wav", "--prompt-file", "{tmp}/p.txt"],
         ("larger than 16 MiB",), setup=files(**{"p.txt": b"a" * (17 * 2**20)})),
    Case("prompt file of control bytes", ["generate", "-m", "tiny-random", "-q", "--out", "{tmp}/out/a.wav", "--prompt-file", "{tmp}/p.txt"],
         ("empty",), setup=files(**{"p.txt": b"\x00\x01\x1b[2J\x7f"})),
    Case("escape sequences in a prompt", gen(out="{tmp}/out/a.wav")[:-1] + [ESC], kind="ok", model=True, after=prompt_is("red jazz"),
         examples=("terminal escapes echoed raw",)),
    Case("prompt of control characters only", gen(out="{tmp}/out/a.wav")[:-1] + ["\x1b[2J\x07"], ("no prompt given",)),
    Case("--out with an escape character", gen(out="{tmp}/out/a\x1b[2J.wav"), ("--out", "control character", "\\x1b")),
    Case("--out with a newline", gen(out="{tmp}/out/a\nb.wav"), ("--out", "control character", "\\n")),
    Case("missing file named with escapes is shown escaped", gen("--continue", "{tmp}/\x1b]0;owned\x07.wav"), ("\\x1b", "does not exist")),
    Case("lyrics with a BOM", ["generate", "-m", "tiny-random", "-d", "0.3", "-q", "--out", "{tmp}/out/a.wav", "--lyrics", "{tmp}/l.txt", "pop"],
         kind="ok", model=True, setup=files(**{"l.txt": b"\xef\xbb\xbfMy Song\nlove love love\n"}),
         after=lambda c: (lambda p: (assert_(p.startswith("pop, with vocals, song titled \"My Song\"")), assert_("\ufeff" not in p)))(sidecar_says(c)["prompt"])),
    Case("lyrics not UTF-8", ["generate", "-m", "tiny-random", "-q", "--out", "{tmp}/out/a.wav", "--lyrics", "{tmp}/l.txt", "pop"],
         ("lyrics file", "not UTF-8"), setup=files(**{"l.txt": b"\xff\xfeM\x00y\x00"})),
    Case("batch text file with a BOM and CRLF", batch("{tmp}/items.txt"), kind="ok", model=True,
         setup=files(**{"items.txt": b"\xef\xbb\xbfjazz\r\nrock\r\n"}), after=batch_prompts_are("jazz", "rock"),
         examples=("Notepad BOM in a batch file",)),
    Case("batch JSONL with a BOM", batch(), kind="ok", model=True, setup=files(**{"items.jsonl": b'\xef\xbb\xbf{"prompt": "jazz"}\n'}),
         after=batch_prompts_are("jazz")),
    Case("batch file not UTF-8", batch("{tmp}/items.txt"), ("batch file", "not UTF-8", "line 2"),
         setup=files(**{"items.txt": b"jazz\nr\xf6ck\n"})),
    Case("batch prompt with escapes", batch("{tmp}/items.txt"), kind="ok", model=True, setup=files(**{"items.txt": ESC + "\n"}),
         after=batch_prompts_are("red jazz")),
    Case("batch output name with an escape", batch(), ("line 1", "control character"), setup=lines({"prompt": "a", "output": "x\x1b[2J"})),
    Case("batch prompt of control characters only", batch(), ("line 1", "no prompt"), setup=lines({"prompt": "\x1b[2J\x00"})),
    Case("sections with a BOM", ["generate", "-m", "tiny-random", "-q", "--out", "{tmp}/out/a.wav", "--segments", "{tmp}/s.txt"],
         kind="ok", model=True, setup=files(**{"s.txt": b"\xef\xbb\xbf0:00 calm\r\n0:01 end\r\n"}), after=piece_made(["calm"]),
         examples=("Notepad BOM in a sections file",)),
    Case("sections separated by tabs", ["generate", "-m", "tiny-random", "-q", "--out", "{tmp}/out/a.wav", "--segments", "{tmp}/s.txt"],
         kind="ok", model=True, setup=files(**{"s.txt": "0:00\tcalm\n0:00.6\tdrums\n0:01.2\tend\n"}), after=piece_made(["calm", "drums"]),
         examples=("tab-separated sections",)),
    Case("sections not UTF-8", ["generate", "-m", "tiny-random", "-q", "--out", "{tmp}/out/a.wav", "--segments", "{tmp}/s.txt"],
         ("sections file", "not UTF-8", "line 2"), setup=files(**{"s.txt": b"0:00 calm\n0:05 d\xe9j\xe0 vu\n"})),
    Case("sections time with an escape", ["generate", "-m", "tiny-random", "-q", "--out", "{tmp}/out/a.wav", "--segments", "{tmp}/s.txt"],
         ("not a time", "\\x1b"), setup=files(**{"s.txt": "0:00 calm\n\x1b[2J0:05 drums\n"})),
    # where output goes: regular files only, checked before any work
    Case("--out /dev/full", gen(out="/dev/full"), ("--out", "/dev/full", "character device"), after=dev_untouched("full"),
         examples=("--out /dev/full",)),
    Case("--out /dev/null", gen(out="/dev/null"), ("--out", "character device"), after=dev_untouched("null")),
    Case("--out a FIFO", gen(out="{tmp}/out/a.wav"), ("--out", "FIFO"), setup=fifo("out/a.wav"),
         after=lambda c: assert_(sorted(p.name for p in c.out.iterdir()) == ["a.wav"])),
    Case("sidecar is a FIFO", gen(out="{tmp}/out/a.wav"), ("a.json", "FIFO"), setup=fifo("out/a.json"),
         after=lambda c: assert_(sorted(p.name for p in c.out.iterdir()) == ["a.json"]), examples=("FIFO where the sidecar goes",)),
    Case("--out a socket", gen(out="{tmp}/out/a.wav"), ("--out", "socket"), setup=unix_socket("out/a.wav"),
         after=lambda c: assert_(sorted(p.name for p in c.out.iterdir()) == ["a.wav"])),
    Case("--out a symlink loop", gen(out="{tmp}/out/a.wav"), ("--out", "loop of symbolic links"), setup=link_loop("out/a.wav"),
         after=lambda c: assert_(sorted(p.name for p in c.out.iterdir()) == ["a.wav", "a.wav.b"]), examples=("symlink loop --out",)),
    Case("--out inside a symlink loop", gen(out="{tmp}/loop/a.wav"), ("loop of symbolic links",), setup=link_loop("loop"),
         after=nothing_written),
    Case("--out folder/ made", gen(out="{tmp}/takes/"), kind="ok", model=True, after=wrote_in("takes"), examples=("--out takes/",)),
    Case("--out nested folder/ made", gen(out="{tmp}/a/b/"), kind="ok", model=True, after=wrote_in("a/b")),
    Case("--out file/ where a file is", gen(out="{tmp}/f/"), ("--out", "names a folder", "is a file"), setup=files(f=b"x"),
         after=kept("f", b"x")),
    Case("sidecar name is a folder", gen(out="{tmp}/out/a.wav"), ("a.json", "is a folder"), setup=lambda c: (c.out / "a.json").mkdir(parents=True),
         after=lambda c: assert_((c.out / "a.json").is_dir() and not (c.out / "a.wav").exists())),
    Case("test-suite --out-dir under a device", ["test-suite", "--quick", "--only", "small", "--out-dir", "/dev/null/x"], ("not a folder",), code=1),
    Case("batch --out-dir a device", ["batch", "{tmp}/items.jsonl", "--out-dir", "/dev/null", "-m", "tiny-random"], ("--out-dir", "not a folder"),
         setup=lines({"prompt": "a"})),
    # input audio: finite, bounded, read only as far as needed
    Case("continuation of NaN", gen("--continue", "{tmp}/nan.wav"), ("--continue", "not a finite number", "0.003 s"),
         setup=float_wav("nan.wav", 100), examples=("NaN continuation accepted",)),
    Case("continuation with infinity", gen("--continue", "{tmp}/inf.wav"), ("--continue", "not a finite number"),
         setup=float_wav("inf.wav", 15999, float("inf"))),
    Case("melody with -infinity", gen("--melody", "{tmp}/inf.wav"), ("--melody", "not a finite number"),
         setup=float_wav("inf.wav", 5, float("-inf"))),
    Case("melody NaN past what is read", ["generate", "-m", "tiny-random-melody", "-d", "0.3", "-q", "--out", "{tmp}/out/a.wav",
                                          "--melody", "{tmp}/m.wav", "x"],
         kind="ok", setup=float_wav("m.wav", 30000, seconds=1.0), before_load=False,
         after=lambda c: assert_(sf.info(c.out / "a.wav").frames > 0)),
    Case("continuation longer than an hour", gen("--continue", "{tmp}/long.wav"), ("--continue", "more than the 3600 s"),
         setup=lambda c: sf.write(c.tmp / "long.wav", np.zeros(3601 * 8000, np.int16), 8000, subtype="PCM_16"),
         examples=("2-hour input audio decoded whole",)),
    Case("-n a billion", gen("-n", "1000000000"), ("--num-samples", "at most 256"), examples=("-n 1000000000",)),
    Case("-n 257", gen("-n", "257"), ("--num-samples", "256")),
    Case("batch num_samples a billion", batch(), ("line 1", "num_samples", "256"), setup=lines({"prompt": "a", "num_samples": 10**9})),
    Case("section shorter than the codebook delay", ["generate", "-m", "tiny-random", "-q", "--out", "{tmp}/out/a.wav", "--segments", "{tmp}/s.txt"],
         ("lasts 0.01 s", "at least 0.5 s"), setup=files(**{"s.txt": "0:00 a\n0:00.01 b\n0:01 end\n"}),
         examples=("sections shorter than the delay",)),
    Case("last section too short", ["generate", "-m", "tiny-random", "-q", "--out", "{tmp}/out/a.wav", "--segments", "{tmp}/s.txt"],
         ("lasts 0.10 s",), setup=files(**{"s.txt": "0:00 a\n0:00.9 b\n0:01 end\n"})),
    Case("batch segments too short", batch(), ("line 1", "lasts"), setup=lines({"segments": ["0:00 a", "0:00.2 b", "0:01 end"]})),
    # --from-sidecar: every problem named, before anything loads
    Case("sidecar not JSON", replay(), ("take.json", "not JSON", "line 1"), setup=sidecar_file(text="{nope"), examples=("sidecar KeyError",)),
    Case("sidecar a JSON list", replay(), ("not a JSON object",), setup=sidecar_file(text="[1, 2]")),
    Case("sidecar empty", replay(), ("not JSON",), setup=sidecar_file(text="")),
    Case("sidecar not UTF-8", replay(), ("sidecar file", "not UTF-8"), setup=sidecar_file(text=b'{"prompt": "\xff"}')),
    Case("sidecar with a BOM replays", replay(), kind="ok", model=True,
         setup=sidecar_file(text=b"\xef\xbb\xbf" + json.dumps(GOOD_SIDECAR).encode()), after=prompt_is("x")),
    Case("sidecar without a prompt", replay(), ("prompt is missing",), setup=sidecar_file(drop=("prompt",))),
    Case("sidecar prompt a number", replay(), ("prompt must be a non-empty string",), setup=sidecar_file({"prompt": 5})),
    Case("sidecar model a string", replay(), ("model must be a JSON object",), setup=sidecar_file({"model": "tiny-random"}),
         examples=("sidecar AttributeError",)),
    Case("sidecar model key a number", replay(), ("model.key must be a string",), setup=sidecar_file({"model": {"key": 7}})),
    Case("sidecar names no model", replay(), ("names no model",), setup=sidecar_file({"model": {"key": None, "folder": None}})),
    Case("sidecar fingerprint a string", replay(), ("weights_fingerprint",), setup=sidecar_file({"model": {"key": "tiny-random", "weights_fingerprint": "abc"}})),
    Case("sidecar settings a list", replay(), ("settings must be a JSON object",), setup=sidecar_file({"settings": []})),
    Case("sidecar without settings", replay(), ("settings is missing",), setup=sidecar_file(drop=("settings",))),
    Case("sidecar unknown setting", replay(), ("settings.temprature is not a setting",), setup=sidecar_file({"settings": {"temprature": 2}})),
    Case("sidecar top_k a word", replay(), ("settings.top_k must be an integer",), setup=sidecar_file({"settings": {"top_k": "lots"}})),
    Case("sidecar duration negative", replay(), ("settings.duration",), setup=sidecar_file({"settings": {"duration": -1}})),
    Case("sidecar segments garbled", replay(), ("segments must be a list",), setup=sidecar_file({"settings": {"segments": "0:00 a"}})),
    Case("sidecar seed missing", replay(), ("seed is missing",), setup=sidecar_file(drop=("seed",))),
    Case("sidecar seed a string", replay(), ("seed must be an integer",), setup=sidecar_file({"seed": "5"})),
    Case("sidecar seed out of range", replay(), ("seed must be an integer from 0 to 2147483647",), setup=sidecar_file({"seed": 2**40})),
    Case("sidecar sample_index past the batch", replay(), ("sample_index must be an integer from 0 to 0",), setup=sidecar_file({"sample_index": 3}),
         examples=("bad sample index refused after generating",)),
    Case("sidecar sample_index negative", replay(), ("sample_index",), setup=sidecar_file({"sample_index": -1})),
    Case("sidecar audio a list", replay(), ("audio must be a JSON object",), setup=sidecar_file({"audio": [1]})),
    Case("sidecar audio normalize unknown", replay(), ("audio:", "normalisation"), setup=sidecar_file({"audio": {"normalize": "loudest"}})),
    Case("sidecar dtype a number", replay(), ("dtype must be a string",), setup=sidecar_file({"dtype": 16})),
    Case("sidecar batch garbled", replay(), ("batch must be an object",), setup=sidecar_file({"batch": 3})),
    Case("sidecar many problems at once", replay(), ("prompt is missing", "seed is missing", "settings.top_k"),
         setup=sidecar_file({"settings": {"top_k": "x"}}, drop=("prompt", "seed"))),
    Case("sidecar 5 MiB", replay(), ("larger than 4 MiB",), setup=sidecar_file(text=" " * (5 * 2**20))),
    Case("sidecar missing", replay(), ("sidecar file", "take.json"),),
    # the environment: stray launcher variables, sizes without units, COLUMNS
    Case("stray RANK variables with batch", batch(), kind="ok", model=True,
         setup=both(env(RANK="1", LOCAL_RANK="1", WORLD_SIZE="2"), lines({"prompt": "a", "output": "a"})),
         after=lambda c: assert_(sf.info(c.out / "a.wav").frames > 0), examples=("stray RANK in batch",)),
    Case("stray WORLD_SIZE with generate", gen(), kind="ok", model=True, setup=env(WORLD_SIZE="4", LOCAL_RANK="3"),
         after=lambda c: assert_(sf.info(c.out / "a.wav").frames > 0)),
    Case("--gpu-mem without a unit", gen("--gpu-mem", "8"), ("--gpu-mem", "no unit", "8GiB"), examples=("--gpu-mem 8",)),
    Case("--ram without a unit", gen("--ram", "16"), ("--ram", "no unit")),
    Case("--reserve without a unit", gen("--reserve", "512"), ("--reserve", "no unit")),
    Case("--max-vram without a unit", gen("--max-vram", "6"), ("--max-vram", "no unit")),
    Case("memory-plan --gpu-mem without a unit", ["memory-plan", "--size", "small", "--gpu-mem", "8"], ("--gpu-mem", "no unit")),
    # what a newcomer met in the first hour
    Case("the first command run twice", ["generate", "-m", "tiny-random", "-d", "0.3", "-q", "a calm lofi beat"], kind="ok", model=True,
         setup=files(**{"output__a-calm-lofi-beat.wav": b"first", "output__a-calm-lofi-beat.json": "{}"}),
         after=lambda c: (kept("output/a-calm-lofi-beat.wav", b"first")(c), assert_(sf.info(c.tmp / "output/a-calm-lofi-beat-2.wav").frames > 0)),
         says=("a-calm-lofi-beat-2.wav",), examples=("rerunning the first command fails",)),
    Case("loudness that clips gives advice that works", gen("--normalize", "loudness", "--loudness-headroom-db", "1", "--subtype", "FLOAT"),
         kind="ok", model=True, says=("clipped at full scale", "--normalize peak avoids it"), never_says=("FLOAT keeps them",),
         after=lambda c: assert_(sidecar_says(c)["audio"]["clipped_samples"] > 0), examples=("--normalize loudness suggests FLOAT",)),
    Case("models list --refresh offline", ["models", "list", "--refresh"], ("HF_HUB_OFFLINE",), before_load=False,
         examples=("offline --refresh: eight warnings, exit 0",)),
    Case("a --no-gpu plan says so", ["memory-plan", "--size", "small", "--no-gpu"], kind="ok", says=("simulated: no GPU",), before_load=False,
         never_says=("simulated: gpus",), examples=("--no-gpu headed simulated: gpus",)),
]


def assert_(condition: bool) -> None:
    assert condition


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
        for words in case.says:
            assert words in result.stdout + result.stderr, (words, result.stdout, result.stderr)
        for words in case.never_says:
            assert words not in result.stdout + result.stderr, (words, result.stderr)
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


# -- the audiocraft compat API: audiocraft's documented arguments, its exception types and words ----


@dataclass
class ApiCase:
    id: str
    call: Callable  # (model, tmp) -> anything; must raise
    raises: type
    needle: str


def _wave(samples: int = 3200, value: float = 0.1):
    import torch

    return torch.full((1, samples), value)


def _api_write(tmp: Path, wav=None, rate=32000, **kw):
    from musicgen_cli.compat.audiocraft import audio_write

    return audio_write(tmp / "w", _wave() if wav is None else wav, rate, **kw)


API_CASES = [
    ApiCase("generate a string", lambda m, t: m.generate("abc"), TypeError, "list of strings, not a str"),
    ApiCase("generate an empty list", lambda m, t: m.generate([]), ValueError, "descriptions is empty"),
    ApiCase("generate a number in the list", lambda m, t: m.generate([5]), TypeError, "descriptions[0] must be a string"),
    ApiCase("generate None in the list", lambda m, t: m.generate(["a", None]), TypeError, "descriptions[1]"),
    ApiCase("generate a dict", lambda m, t: m.generate({"a": 1}), TypeError, "list of strings, not dict"),
    ApiCase("generate_unconditional 0", lambda m, t: m.generate_unconditional(0), ValueError, "num_samples"),
    ApiCase("continuation of 0 samples", lambda m, t: m.generate_continuation(_wave(0), 32000), ValueError, "prompt has no samples"),
    ApiCase("continuation of NaN", lambda m, t: m.generate_continuation(_wave(value=float("nan")), 32000), ValueError, "not finite"),
    ApiCase("continuation a numpy array", lambda m, t: m.generate_continuation(np.zeros((1, 3200), np.float32), 32000), TypeError, "torch.Tensor"),
    ApiCase("continuation at rate 0", lambda m, t: m.generate_continuation(_wave(), 0), ValueError, "prompt_sample_rate"),
    ApiCase("continuation descriptions a string", lambda m, t: m.generate_continuation(_wave(), 32000, "abc"), TypeError, "list of strings"),
    ApiCase("continuation descriptions miscounted", lambda m, t: m.generate_continuation(_wave(), 32000, ["a", "b"]), AssertionError,
            "Prompt and nb. descriptions doesn't match"),
    ApiCase("continuation longer than the duration", lambda m, t: (m.set_generation_params(duration=0.1),
                                                                  m.generate_continuation(_wave(6400), 32000)), AssertionError,
            "Prompt is longer than audio to generate"),
    ApiCase("chroma on a text model", lambda m, t: m.generate_with_chroma(["a"], _wave(), 32000), RuntimeError,
            "doesn't support melody conditioning"),
    ApiCase("extend_stride 0", lambda m, t: m.set_generation_params(extend_stride=0), ValueError, "extend_stride must be a positive"),
    ApiCase("extend_stride -5", lambda m, t: m.set_generation_params(extend_stride=-5), ValueError, "extend_stride"),
    ApiCase("extend_stride past max_duration", lambda m, t: m.set_generation_params(extend_stride=30), AssertionError,
            "Cannot stride by more than max generation duration."),
    ApiCase("duration nan", lambda m, t: m.set_generation_params(duration=float("nan")), ValueError, "duration must be a positive"),
    ApiCase("duration 0", lambda m, t: m.set_generation_params(duration=0), ValueError, "duration"),
    ApiCase("cfg_coef -1", lambda m, t: m.set_generation_params(cfg_coef=-1), ValueError, "cfg_coef -1 must be 0 or more"),
    ApiCase("top_k -5", lambda m, t: m.set_generation_params(top_k=-5), ValueError, "top_k -5"),
    ApiCase("top_p 2", lambda m, t: m.set_generation_params(top_p=2), ValueError, "top_p 2"),
    ApiCase("temperature 0 with sampling", lambda m, t: m.set_generation_params(temperature=0), ValueError, "temperature"),
    ApiCase("audio_write sample_rate 0", lambda m, t: _api_write(t, rate=0), ValueError, "sample_rate must be a positive integer"),
    ApiCase("audio_write sample_rate 44.1", lambda m, t: _api_write(t, rate=44.1), ValueError, "sample_rate"),
    ApiCase("audio_write integers", lambda m, t: _api_write(t, wav=_wave().to(__import__("torch").int16)), AssertionError,
            "wav is not floating point"),
    ApiCase("audio_write 3 dims", lambda m, t: _api_write(t, wav=_wave()[None]), ValueError, "at most 2 dimension"),
    ApiCase("audio_write NaN", lambda m, t: _api_write(t, wav=_wave(value=float("nan"))), AssertionError, "non-finite"),
    ApiCase("audio_write empty", lambda m, t: _api_write(t, wav=_wave(0)), ValueError, "no samples"),
    ApiCase("audio_write a numpy array", lambda m, t: _api_write(t, wav=np.zeros((1, 10), np.float32)), TypeError, "torch.Tensor"),
]


@pytest.fixture(scope="module")
def compat_model(tiny_models):
    from musicgen_cli.compat.audiocraft import MusicGen

    return MusicGen.get_pretrained(str(tiny_models["mono"]), device="cpu")


@pytest.mark.parametrize("case", API_CASES, ids=[c.id for c in API_CASES])
def test_compat_api_refuses_as_audiocraft_does(case: ApiCase, compat_model, tmp_path):
    from musicgen_cli.errors import MgenError

    compat_model.set_generation_params(duration=0.2)
    with pytest.raises(case.raises, match=re_escape(case.needle)) as caught:
        case.call(compat_model, tmp_path)
    assert isinstance(caught.value, MgenError)  # and mgen's own front ends word it like any other
    assert not list(tmp_path.iterdir())  # nothing written
    compat_model.set_generation_params(duration=0.2)  # a refused call changed nothing that the next one sees


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


# -- through subprocesses and a terminal: COLUMNS, signals, the studio ----------------------------


@pytest.mark.parametrize("columns", ["0", "1", "-3", "abc"])
def test_columns_never_swallow_an_error(columns, tmp_path, cache_dir):
    from cli_run import run_subprocess

    result = run_subprocess("generate", "--top-k", "-5", "x", MGEN_CACHE_DIR=str(cache_dir), COLUMNS=columns)
    assert "--top-k -5" in one_line_error(result) and result.returncode == 2


SIGNAL_AT_SIDECAR = """
import os, signal, sys
from musicgen_cli.jobs import pairs
sent = getattr(signal, sys.argv.pop(1))
real = pairs._commit
def commit(tmp, target):
    if target.suffix == ".json":
        os.kill(os.getpid(), sent)  # the signal lands while the pair is half moved in
    real(tmp, target)
pairs._commit = commit
sys.argv = ["mgen", *sys.argv[1:]]
from musicgen_cli.cli.app import main
main()
"""


def _model_in(cache: Path, tiny_folder: Path) -> None:
    shutil.copytree(tiny_folder, cache / "tiny-random")
    mark_ready(cache / "tiny-random", {"key": "tiny-random", "random_weights": True, "builder": "mono"})


@pytest.mark.parametrize("command,sent,code", [("generate", "SIGTERM", 143), ("generate", "SIGHUP", 129), ("batch", "SIGTERM", 143)])
def test_a_signal_while_writing_leaves_the_old_pair_and_nothing_partial(command, sent, code, tmp_path, cache_dir, tiny_folder):
    _model_in(cache_dir, tiny_folder)
    out = tmp_path / "out"
    env_ = {**os.environ, "PYTHONPATH": str(ROOT), "MGEN_CACHE_DIR": str(cache_dir), "COLUMNS": "200"}
    if command == "generate":
        old_pair(Ctx(tmp_path, cache_dir, None))
        args = ["generate", "-m", "tiny-random", "-d", "0.3", "-q", "--overwrite", "--out", str(out / "a.wav"), "x"]
    else:
        (tmp_path / "items.jsonl").write_text(json.dumps({"prompt": "a", "output": "a"}) + "\n")
        args = ["batch", str(tmp_path / "items.jsonl"), "--out-dir", str(out), "-m", "tiny-random", "-d", "0.3", "--quiet"]
    result = subprocess.run([sys.executable, "-c", SIGNAL_AT_SIDECAR, sent, *args], env=env_, capture_output=True, text=True, timeout=300)
    assert f"stopped by {sent}" in one_line_error(result) and result.returncode == code
    left = sorted(p.name for p in out.iterdir())
    assert not [n for n in left if "mgen-part" in n or n == ".mgen-lock"], left
    if command == "generate":
        old_pair_kept(Ctx(tmp_path, cache_dir, None))
    else:
        assert not (out / "a.wav").exists() and not (out / "a.json").exists()


def test_stray_rank_variables_in_a_subprocess_batch(tmp_path, cache_dir, tiny_folder):
    """As a user's shell has them after a distributed job: ignored, one process, the clip made."""
    from cli_run import run_subprocess

    _model_in(cache_dir, tiny_folder)
    (tmp_path / "p.txt").write_text("jazz\n")
    result = run_subprocess("batch", str(tmp_path / "p.txt"), "--out-dir", str(tmp_path / "out"), "-m", "tiny-random", "-d", "0.3",
                            "--quiet", MGEN_CACHE_DIR=str(cache_dir), RANK="3", LOCAL_RANK="1", WORLD_SIZE="4")
    assert result.returncode == 0, result.stderr
    assert sf.info(tmp_path / "out" / "0001-jazz.wav").frames > 0 and not list((tmp_path / "out").glob("manifest.rank-*"))


def test_replay_of_a_clip_made_without_a_seed_is_the_same_file(tmp_path, cache_dir, tiny_folder, capsys, monkeypatch):
    """The seed used is replayed, the model is found by its key through today's cache (not the
    recorded folder), and the sidecar says which model it was."""
    _model_in(cache_dir, tiny_folder)
    first = run_main(capsys, "generate", "-m", "tiny-random", "-d", "0.3", "-q", "--out", str(tmp_path / "a.wav"), "x")
    assert first.returncode == 0, first.stderr
    meta = json.loads((tmp_path / "a.json").read_text())
    assert meta["settings"]["seed"] is None and isinstance(meta["seed"], int)
    assert meta["model"]["key"] == "tiny-random" and meta["model"]["random_weights"] is True

    moved = tmp_path / "other-cache"  # another install's cache: the recorded folder is not used
    shutil.copytree(cache_dir, moved)
    shutil.rmtree(cache_dir / "tiny-random")
    monkeypatch.setenv("MGEN_CACHE_DIR", str(moved))
    again = run_main(capsys, "generate", "-q", "--from-sidecar", str(tmp_path / "a.json"), "--out", str(tmp_path / "b.wav"))
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "b.wav").read_bytes() == (tmp_path / "a.wav").read_bytes()
    replayed = json.loads((tmp_path / "b.json").read_text())
    assert replayed["model"]["folder"] == str(moved / "tiny-random") and replayed["model"]["key"] == "tiny-random"

    meta["model"].update(key="my-own-model", folder=str(moved / "tiny-random"))  # a key this install does not know
    (tmp_path / "c.json").write_text(json.dumps(meta))
    fallback = run_main(capsys, "generate", "-q", "--from-sidecar", str(tmp_path / "c.json"), "--out", str(tmp_path / "c2.wav"))
    assert fallback.returncode == 0, fallback.stderr
    assert "'my-own-model' is not known to this install; using the folder the sidecar recorded" in fallback.stderr
    assert (tmp_path / "c2.wav").read_bytes() == (tmp_path / "a.wav").read_bytes()


# The studio reads lines as a person types them: each bad one is one `error:` line and the session goes on.
STUDIO_LINES = [
    ("binary garbage", b"\xff\xfe\x00garbage\x81", "input line 4 is not UTF-8: byte 0xff at byte offset 0 — type"),
    ("escape sequences only", b"\x1b[2J\x1b]0;owned\x07", None),  # nothing left: no take, no error
    ("keep a missing take", b"/keep 9 intro", "there is no take 9"),
    ("keep into a device", b"/keep 1 /dev/null", "is a character device"),
    ("keep as a folder", b"/keep 1 sub/", "names a folder"),
    ("keep as dot", b"/keep 1 .", "names a folder"),
    ("keep onto a FIFO", b"/keep 1 {tmp}/pipe.wav", "FIFO"),
    ("keep with an escape", b"/keep 1 a\x1b[2Jb", None),  # the line is cleaned: kept as "ab"
    ("keep under a file", b"/keep 1 {tmp}/afile/x", "afile/x: Not a directory"),
    ("keep a second time", b"/keep 1 ab", "already exists"),
    ("melody on a text model", b"/melody {tmp}/nan.wav", "takes no melody"),
    ("segments not UTF-8", b"/segments {tmp}/s.txt", "not UTF-8"),
    ("samples a billion", b"/samples 1000000000", "at most 256"),
]


def test_studio_bad_lines_each_one_error_and_the_session_goes_on(tmp_path, cache_dir, tiny_folder):
    _model_in(cache_dir, tiny_folder)
    os.mkfifo(tmp_path / "pipe.wav")
    (tmp_path / "afile").write_text("x")
    float_wav("nan.wav", 3)(Ctx(tmp_path, cache_dir, None))
    (tmp_path / "s.txt").write_bytes(b"0:00 caf\xe9\n")
    out = tmp_path / "session"
    script = b"/duration 0.3\n/seed 1\nfirst take\n" + b"".join(line.replace(b"{tmp}", str(tmp_path).encode()) + b"\n"
                                                              for _, line, _ in STUDIO_LINES) + b"last take\n/quit\n"
    proc = subprocess.run([sys.executable, "-m", "musicgen_cli", "studio", "-m", "tiny-random", "--out-dir", str(out)], input=script,
                          capture_output=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "MGEN_CACHE_DIR": str(cache_dir), "MGEN_DATA_DIR": str(tmp_path / "d"),
                               "COLUMNS": "200"})
    stderr, stdout = proc.stderr.decode(), proc.stdout.decode()
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    expected = [needle for _, _, needle in STUDIO_LINES if needle]
    assert len(errors) == len(expected), errors
    for line, needle in zip(errors, expected):
        assert needle in line, (needle, line)
    assert "\x1b[2J" not in stdout + stderr and "\x1b]0;owned" not in stdout + stderr  # nothing echoed drives the terminal
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("take-")) == ["ab.json", "ab.wav"]
    assert len(list(out.glob("take-*.wav"))) == 2 and not list(out.glob(".mgen-part*"))


@pytest.mark.parametrize("sent,code", [("SIGTERM", 143), ("SIGHUP", 129)])
def test_studio_over_a_terminal_ends_on_a_signal_leaving_nothing_partial(sent, code, tmp_path, cache_dir, tiny_folder):
    import signal

    import pexpect

    _model_in(cache_dir, tiny_folder)
    out = tmp_path / "session"
    child = pexpect.spawn(
        sys.executable, ["-m", "musicgen_cli", "studio", "-m", "tiny-random", "-d", "0.3", "--out-dir", str(out)],
        env={**os.environ, "PYTHONPATH": str(ROOT), "MGEN_CACHE_DIR": str(cache_dir), "MGEN_DATA_DIR": str(tmp_path / "d"),
             "PYTHONUNBUFFERED": "1", "COLUMNS": "160", "PROMPT_TOOLKIT_NO_CPR": "1"},
        encoding="utf-8", timeout=180, dimensions=(50, 160),
    )
    try:
        child.expect_exact("studio>")
        child.sendline("first take")
        child.expect(r"take-001-first-take\.wav")
        child.expect_exact("studio>")
        child.sendline("/duration 120")
        child.expect_exact("set duration to 120.0")
        child.expect_exact("studio>")
        child.sendline("long one")
        child.expect(r"/ 120\.0 s audio")  # the take is running
        child.kill(getattr(signal, sent))
        child.expect_exact(f"stopped by {sent}")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == code, (child.exitstatus, child.signalstatus)
    assert sorted(p.name for p in out.iterdir()) == ["take-001-first-take.json", "take-001-first-take.wav"]


def test_the_tables_pass_150():
    """The bad-input tables of both hardening rounds, counted: every entry point together."""
    total = len(CASES) + len(API_CASES) + len(STUDIO_LINES)
    assert total > 150, total


def test_models_rm_cannot_take_a_model_between_resolve_and_load(tmp_path, cache_dir, tiny_folder, capsys):
    """The lease is taken as the name resolves: an rm in the window before loading is refused,
    and the run then loads the model it resolved."""
    from musicgen_cli.engine import musicgen

    _model_in(cache_dir, tiny_folder)
    resolved = musicgen.resolve_model("tiny-random")
    line = one_line_error(run_main(capsys, "models", "rm", "tiny-random", "--yes"))
    assert "in use by a running generation" in line and resolved.folder.is_dir()
    mg = musicgen.load_model(resolved)
    assert mg.lease is resolved.lease and mg.folder == cache_dir / "tiny-random"
    del mg, resolved
    import gc

    gc.collect()
    assert run_main(capsys, "models", "rm", "tiny-random", "--yes").returncode == 0  # released with the last holder
    assert not (cache_dir / "tiny-random").exists()


def test_tiny_random_weights_do_not_depend_on_torch_or_its_generator():
    """Drawn from numpy's PCG64 raw words with exact float32 arithmetic: the same numbers under
    any torch (and any state of torch's generator), so the same seed gives the same audio."""
    import hashlib

    import torch

    from musicgen_cli.testing import build_model

    torch.manual_seed(1)
    first = build_model(ModelSpec()).state_dict()
    torch.manual_seed(12345)
    torch.rand(1000)
    second = build_model(ModelSpec()).state_dict()
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    digest = hashlib.sha256()
    for name in sorted(first):
        digest.update(name.encode() + first[name].detach().contiguous().numpy().tobytes())
    assert digest.hexdigest()[:16] == TINY_RANDOM_DIGEST


# transformers' parameter names and constant tensors enter it too: a transformers upgrade that
# renames parameters changes it (and then the model), which this pins down.
TINY_RANDOM_DIGEST = "b6355475faafca10"
