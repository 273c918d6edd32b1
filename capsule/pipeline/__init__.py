"""A trial's pipeline: its stages and stage-cache units (each defined once, in `stages/`), the
registry that orders them, the trial folder's layout, the executor and the stage cache."""
