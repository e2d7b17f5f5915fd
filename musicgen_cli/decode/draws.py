"""Which draw picks a sampled token, by engine and device (no torch import: a replay decides
before anything loads whether it can give the recorded clip again).

The same seed gives the same tokens only through the same draw: transformers' `multinomial`
(the reference engine everywhere, the fast loop on the CPU) or the exponential race the fast
loop makes off the host (decode/sampler.py says why). Greedy decoding draws nothing.
"""

from __future__ import annotations

MULTINOMIAL = "multinomial"
EXPONENTIAL_RACE = "exponential-race"
ARGMAX = "argmax"


def sync_free_on(device_type: str) -> bool:
    """Whether the fast loop's draws on a device of this type take the sync-free race (every
    device but the host: CUDA, and the meta device the VRAM ledger stands in for a GPU with)."""
    return device_type != "cpu"


def draw_for(engine: str, device_type: str, greedy: bool) -> str:
    """The draw that picks tokens for `engine` ("fast" or "reference") with the LM on `device_type`."""
    if greedy:
        return ARGMAX
    return EXPONENTIAL_RACE if engine == "fast" and sync_free_on(device_type) else MULTINOMIAL
