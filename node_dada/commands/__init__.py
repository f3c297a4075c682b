"""The ``node-dada`` commands that are not LightningCLI subcommands (:mod:`node_dada.cli`):
one module per command, holding its argparse parser and ``main(argv) -> int``, and
:mod:`node_dada.commands.args`, the pieces they share. The library modules they drive
define no parser."""
