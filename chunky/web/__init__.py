"""The explorer: `chunky serve` (a local, read-only Starlette app over SURF runs, TURF traces and indexes,
and steering results) and `chunky report` (one self-contained HTML file of a run, for sharing)."""
