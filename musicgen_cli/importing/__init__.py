"""Bringing outside checkpoints into the cache: transformers folders as they are, audiocraft
checkpoints converted (key matching, safe unpickling)."""
