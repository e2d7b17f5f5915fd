"""Next-token choice: classifier-free guidance, then temperature, top-k, top-p, then a draw.

The order and the arithmetic follow transformers' logits processors step for step, and the draw
is one `torch.multinomial` over all rows, so a seeded run consumes the global RNG exactly as
`generate` does and picks the same tokens.
"""

from __future__ import annotations

import torch

from musicgen_cli.decode.types import Sampling


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


def next_tokens(logits: torch.Tensor, sampling: Sampling) -> torch.LongTensor:
    """`logits` `[rows, vocab]` (twice the rows under guidance) -> one token per output row."""
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
    return torch.multinomial(scores.softmax(dim=-1), num_samples=1).squeeze(1)
