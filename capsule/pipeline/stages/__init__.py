"""The built-in stages, one module each, in trial order (`pipeline.registry` registers them)."""
