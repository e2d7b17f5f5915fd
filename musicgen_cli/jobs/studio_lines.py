"""The studio's commands: the table /help shows, and checking their arguments."""

from __future__ import annotations

from musicgen_cli.engine import audio
from musicgen_cli.errors import MgenError

# name: (arguments, what it does); the order is /help's.
COMMANDS: dict[str, tuple[str, str]] = {
    "duration": ("S", "seconds of audio per take"),
    "seed": ("N|random", "a fixed seed, or a new random one each take"),
    "temperature": ("T", "sampling temperature"),
    "top-k": ("K", "sample among the K most likely codes"),
    "top-p": ("P", "nucleus threshold; 0 turns it off"),
    "guidance": ("G", "classifier-free guidance scale; 1 turns it off"),
    "greedy": ("on|off", "always pick the most likely code"),
    "samples": ("N", "clips per take, generated together"),
    "format": ("wav|flac|ogg|mp3", "file format of the next takes"),
    "normalize": ("peak|loudness|rms|clip|none", "level of the next takes"),
    "melody": ("FILE|off", "melody to follow (melody models)"),
    "segments": ("FILE|off", "a sections file (M:SS prompt lines): the next takes develop section by section"),
    "ending": ("cut|fade|outro", "how the next takes end"),
    "decoder": ("encodec|mbd", "codes to audio: EnCodec, or MultiBand Diffusion (slow; planned again)"),
    "settings": ("", "show the settings"),
    "again": ("", "the last prompt again with the next seed"),
    "extend": ("[S]", "continue the last take by S seconds (default: /duration)"),
    "model": ("KEY", "free this model, plan and load another"),
    "plan": ("", "the memory plan for the current settings"),
    "takes": ("", "the takes of this session"),
    "play": ("[N]", "play take N (default: the last)"),
    "keep": ("N NAME", "copy take N (audio and sidecar) to NAME"),
    "help": ("", "this list"),
    "quit": ("", "end the session (Ctrl-D too)"),
}
# commands that set one GenerateSettings field: name -> (field, parser, example)
FIELDS: dict[str, tuple[str, type, str]] = {
    "duration": ("duration", float, "8"),
    "temperature": ("temperature", float, "1.0"),
    "top-k": ("top_k", int, "250"),
    "top-p": ("top_p", float, "0.9"),
    "guidance": ("guidance", float, "3"),
    "samples": ("num_samples", int, "2"),
}


def parse_value(arg: str, kind: type, name: str, example: str):
    try:
        return kind(arg)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise MgenError(f"/{name} needs {what}, not {arg!r}" if arg else f"/{name} needs {what}", f"e.g. /{name} {example}") from None


def on_off(arg: str, name: str) -> bool:
    if arg.lower() in ("on", "yes", "true", "1"):
        return True
    if arg.lower() in ("off", "no", "false", "0"):
        return False
    raise MgenError(f"/{name} takes on or off, not {arg!r}", f"e.g. /{name} on")


def check_format(fmt: str) -> str:
    audio.format_spec(fmt)
    return fmt


def check_normalize(mode: str) -> str:
    audio.AudioOptions(normalize=mode).validate()
    return mode
