"""The Typer app: commands parse options, call the library and format its results."""
