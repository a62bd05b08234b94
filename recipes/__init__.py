"""Recipes: turn a YAML file into a Composer Trainer (models, data, optimizers, algorithms, callbacks)."""
