"""One module per `edgetune` subcommand; each exposes `register(subparsers)`.

A new subcommand is a new module here plus one line in `edge_runtime.cli.COMMANDS`, so
subcommands never edit each other's code.
"""
