"""Pure functions that return Dash component trees (no callbacks, no I/O)."""
