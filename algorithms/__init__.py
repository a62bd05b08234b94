"""Reusable Composer Algorithms, losses, schedules, metrics and callbacks. Never imports ``recipes``."""
