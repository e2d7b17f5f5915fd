"""Turning a plan into sound: load a model by its plan, `MusicGen.generate`, the codec,
audio I/O, melody chroma, prompt text and int8 quantisation."""
