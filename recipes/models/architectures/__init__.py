"""Plain ``nn.Module`` definitions, one module per family; ``recipes.models.registry`` registers them by name."""
