"""Blockwise distillation (the seed's chapter IV). So far: the schedules that assign independent block tasks to
workers, and their makespans (:mod:`.schedule`); the trainer itself is still to come (see the open issue)."""

from .schedule import bin_packing, list_schedule, lower_bound, makespan, round_robin, simulate

__all__ = ['round_robin', 'bin_packing', 'list_schedule', 'makespan', 'lower_bound', 'simulate']
