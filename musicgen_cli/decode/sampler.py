"""Next-token choice: classifier-free guidance, then temperature, top-k, top-p, then a draw.

The order and the arithmetic follow transformers' logits processors step for step. On the host the
draw is one `torch.multinomial` over all rows, so a seeded run consumes the global RNG exactly
as `generate` does and picks the same tokens.

Off the host (CUDA, and the meta device the VRAM ledger stands in for a GPU with) the draw
differs from transformers', on purpose: `multinomial` reads a value back to the host every call
(a sync that stops graph replays being queued ahead) and checks its input with a device-side
assert, so one NaN from a half-precision overflow would end the CUDA context for the rest of
the process. There the draw is an exponential race (argmax of p / E with E ~ Exp(1), which
picks token i with probability p_i) that never leaves the device, and non-finite logits are
noted on the device and raised as `NonFiniteLogits` once the window is done. Greedy decoding is
an argmax on every device, so greedy tokens match every engine. `draws.draw_for` names the draw
a run makes; the sidecar records it (the same seed gives the same clip only through the same draw).
"""

from __future__ import annotations

import torch

from musicgen_cli.decode.draws import sync_free_on
from musicgen_cli.decode.types import Sampling
from musicgen_cli.errors import NonFiniteLogits


def guided(logits: torch.Tensor, scale: float) -> torch.Tensor:
    """Rows are [conditional; unconditional]: push the conditional away from the unconditional."""
    cond, uncond = logits.split(logits.shape[0] // 2, dim=0)
    return uncond + (cond - uncond) * scale


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    kth = torch.topk(scores, min(k, scores.shape[-1]))[0][..., -1, None]
    return scores.masked_fill(scores < kth, -float("inf"))


def top_p(scores: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches p (at least one)."""
    ascending, order = torch.sort(scores, descending=False)
    tail_mass = ascending.softmax(dim=-1).cumsum(dim=-1)
    drop = tail_mass <= (1 - p)
    drop[..., -1:] = False
    return scores.masked_fill(drop.scatter(1, order, drop), -float("inf"))


def next_tokens(logits: torch.Tensor, sampling: Sampling, *, sync_free: bool = False) -> torch.LongTensor:
    """`logits` `[rows, vocab]` (twice the rows under guidance) -> one token per output row.
    `sync_free`: draw by an exponential race on the device instead of `multinomial`."""
    scores = logits.float()
    if sampling.cfg:
        scores = guided(scores, sampling.guidance_scale)
    if not sampling.do_sample:
        return torch.argmax(scores, dim=-1)
    if sampling.temperature != 1.0:
        scores = scores / sampling.temperature
    if sampling.top_k:
        scores = top_k(scores, sampling.top_k)
    if 0 < sampling.top_p < 1:
        scores = top_p(scores, sampling.top_p)
    probs = scores.softmax(dim=-1)
    if sync_free:
        return torch.argmax(probs / torch.empty_like(probs).exponential_(1), dim=-1)
    return torch.multinomial(probs, num_samples=1).squeeze(1)


class WindowSampler:
    """The draws of one window on one device, with non-finite logits caught before they reach a
    draw (off CUDA, at once) or noted on the device and raised when the window ends (on CUDA)."""

    def __init__(self, sampling: Sampling, device: torch.device, dtype: torch.dtype, *, sync_free: bool | None = None):
        self.sampling = sampling
        self.dtype = dtype
        self.sync_free = sync_free_on(device.type) if sync_free is None else sync_free
        # 0 until a step's logits are not all finite, then that step (1-based)
        self.first_bad = torch.zeros((), dtype=torch.long, device=device)

    def __call__(self, logits: torch.Tensor, step: int) -> torch.LongTensor:
        finite = torch.isfinite(logits).all()
        if not self.sync_free:
            if not finite:
                raise NonFiniteLogits(step, str(self.dtype).removeprefix("torch."))
        else:
            self.first_bad = torch.where((self.first_bad == 0) & ~finite, step, self.first_bad)
        return next_tokens(logits, self.sampling, sync_free=self.sync_free)

    def finish(self) -> None:
        """One host read per window: raise if any step's logits were not finite."""
        step = int(self.first_bad)
        if step:
            raise NonFiniteLogits(step, str(self.dtype).removeprefix("torch."))
