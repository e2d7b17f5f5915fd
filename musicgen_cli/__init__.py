"""mgen: run MusicGen on the hardware you own."""

__version__ = "0.1.0"
