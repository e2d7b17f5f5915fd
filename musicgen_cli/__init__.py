"""mgen: run MusicGen on the hardware you own.

    from musicgen_cli import load_model, GenerateSettings
    mg = load_model("small")
    result = mg.generate("jazz trio", GenerateSettings(duration=8, seed=1))
"""

__version__ = "0.1.0"

__all__ = ["GenerateSettings", "GenerationResult", "MusicGen", "load_model", "__version__"]


def __getattr__(name: str):
    # The engine pulls in torch and transformers; keep `import musicgen_cli` (and `mgen --help`) light.
    if name in {"GenerateSettings", "GenerationResult", "MusicGen", "load_model"}:
        from musicgen_cli.engine import musicgen as engine

        return getattr(engine, name)
    raise AttributeError(name)
