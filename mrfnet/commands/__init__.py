"""One module per `mrfnet` subcommand (the table is mrfnet/cli.py's COMMANDS).

Each module has `add_arguments(parser)`, `run(args)` (returns the exit status) and `EXAMPLE`
(shown under its --help). A module reads the options and calls the library packages
(prototxt_gen, data_prep, solver, inference, evaluation, benchmarks); the work itself lives
there, so that it can be called from Python and tested without a command line. Library code
never imports this package.
"""
