"""Placeholder: the static-cache decode loop lands in the next commit; until then "fast" runs the reference."""

from musicgen_cli.decode import reference_window as generate_window  # noqa: F401
