"""Write random-weight model folders of the released shapes (for `mgen test-suite` on a GPU).

    PYTHONPATH=. python benchmarks/write_shape_models.py OUT_DIR small medium large

Built on the GPU when there is one (seconds instead of minutes) and saved in bfloat16 (half
the disk of float32); the suite then loads them by plan like downloaded models.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musicgen_cli.testing import ModelSpec, write_model_folder  # noqa: E402


def main() -> None:
    out, shapes = Path(sys.argv[1]), sys.argv[2:] or ["small"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for shape in shapes:
        start = time.perf_counter()
        write_model_folder(out / shape, ModelSpec(shape=shape), dtype=torch.bfloat16, device=device)
        if device == "cuda":
            torch.cuda.empty_cache()
        print(f"{shape}: written in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
