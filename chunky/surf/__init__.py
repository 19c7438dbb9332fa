"""SURF: the attribute-search loop (paper §3), its rubrics, pools, judges, robustness tests and
aggregation. Run state lives in `chunky.store`; the CLI commands are in `chunky.surf.commands`."""
