"""The random-model factory under the name tests and benchmarks import it by.

It lives in `store.random_models`, where the `tiny-random` manifest entries are built on first use.
"""

from musicgen_cli.store.random_models import ModelSpec, build_model, build_tokenizer, write_model_folder

__all__ = ["ModelSpec", "build_model", "build_tokenizer", "write_model_folder"]
