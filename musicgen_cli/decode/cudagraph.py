"""CUDA-graph replay of the one-column decode step.

On a GPU an eager decode step is a few hundred small kernel launches whose CPU-side cost
exceeds the GPU work. `Decoder.step_static` keeps every shape fixed (whole-cache attention
with a position mask, the position as a device tensor), so one capture serves every step and
a step costs one `replay()`. Sampling stays outside the graph: it uses the global RNG, in the
same order as transformers.
"""

from __future__ import annotations

import torch


class GraphedStep:
    """Replays `decoder.step_static` for `[rows, K, 1]` codes; advances `decoder.pos`."""

    # Benchmarks and the GPU check turn graphs off to time and compare the eager step.
    enabled = True

    @staticmethod
    def usable(decoder) -> bool:
        if not GraphedStep.enabled:
            return False
        # Streamed layers swap weight storage between two buffers each step, and layers that
        # compute on the CPU put device-to-host copies in the step: neither is capturable. A graph
        # belongs to one device: layers split over several GPUs run eagerly.
        return (decoder.device.type == "cuda" and decoder.streamer is None
                and all(d == decoder.device for d in decoder.where))

    def __init__(self, decoder):
        self.decoder = decoder
        rows = decoder.cache[0][0].shape[0]
        self.codes = torch.zeros((rows, decoder.num_codebooks, 1), dtype=torch.long, device=decoder.device)
        # Warm-up and capture write keys/values at the next position, which the first real
        # step overwrites before anything reads it.
        self.position = torch.full((1,), decoder.pos, dtype=torch.long, device=decoder.device)
        side = torch.cuda.Stream(decoder.device)
        side.wait_stream(torch.cuda.current_stream(decoder.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                decoder.step_static(self.codes, self.position)
        torch.cuda.current_stream(decoder.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = decoder.step_static(self.codes, self.position)

    def __call__(self, codes: torch.Tensor) -> torch.Tensor:
        self.codes.copy_(codes)
        self.position.fill_(self.decoder.pos)
        self.graph.replay()
        self.decoder.pos += 1
        return self.logits
