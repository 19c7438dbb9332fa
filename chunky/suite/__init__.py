"""Regression suites: SURF findings and steering results as cases, exports to inspect-ai and promptfoo, and `chunky check`."""
