"""The command line: the typer app, its options, config files and generated docs."""
