"""Playing a written take: sounddevice when installed (`mgen[play]`), else a system player.

Playback blocks until the sound ends (Ctrl-C stops it). When nothing can play, the caller is
told so and says where the file is.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

# Each player and the arguments that make it play one file and exit without a window or chatter.
SYSTEM_PLAYERS: dict[str, list[str]] = {
    "ffplay": ["-nodisp", "-autoexit", "-loglevel", "error"],
    "aplay": ["-q"],
    "paplay": [],
    "afplay": [],
}


def available_player() -> str | None:
    """'sounddevice', the first system player on PATH, or None."""
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError):  # OSError: the module is there but PortAudio is not
        pass
    else:
        return "sounddevice"
    return next((name for name in SYSTEM_PLAYERS if shutil.which(name)), None)


def play(path: Path) -> str | None:
    """Play `path` to the end; returns the player used, or None when there is none."""
    player = available_player()
    if player == "sounddevice":
        import sounddevice
        import soundfile

        data, rate = soundfile.read(str(path), dtype="float32")
        try:
            sounddevice.play(data, rate)
            sounddevice.wait()
        except KeyboardInterrupt:
            sounddevice.stop()
            raise
        return player
    if player is None:
        return None
    exe = shutil.which(player) or player
    subprocess.run([exe, *SYSTEM_PLAYERS[player], str(path)], check=False, stdout=subprocess.DEVNULL)
    return player
