"""Drivers that run recipes and turn their run records into reports; committed results name their machine."""
