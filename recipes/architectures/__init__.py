"""Plain ``nn.Module`` definitions, one module per family; ``recipes.models`` registers them by name."""
