"""Command-line wiring shared by the ``node-dada`` commands (:mod:`node_dada.cli`)."""
