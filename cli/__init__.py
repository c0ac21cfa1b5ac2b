"""Command line (typer): thin commands that parse options and call the rooms."""
