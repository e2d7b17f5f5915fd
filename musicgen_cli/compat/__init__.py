"""Drop-in APIs of other MusicGen front ends, running on mgen's planner and engine.

    from musicgen_cli.compat.audiocraft import MusicGen, audio_write   # was: from audiocraft...
"""
