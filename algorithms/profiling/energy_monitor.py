"""The energy sampler as a Composer callback: GPU and CPU-package energy, mean power and CPU utilisation of a fit,
logged at each epoch end (so far) and at the end of the fit (:mod:`.energy`)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from .energy import EnergySampler, default_sources

__all__ = ['EnergyMonitor', 'flat_metrics']


def flat_metrics(summary: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """``(metrics, unavailable)`` of a sampler summary: ``energy/<source>_joules``, ``energy/<source>_watts``,
    ``energy/cpu_util_percent``; each unavailable source as ``{'energy/<source>': 'unavailable: <reason>'}``, so that
    nothing unmeasured is ever logged as a number."""
    metrics: dict[str, float] = {'energy/seconds': summary['seconds']}
    unavailable: dict[str, str] = {}
    for name, entry in summary.items():
        if not isinstance(entry, dict):
            continue
        if not entry.get('available'):
            unavailable[f'energy/{name}'] = f"unavailable: {entry.get('reason', '')}"
        elif 'joules' in entry:
            metrics[f'energy/{name}_joules'] = entry['joules']
            if entry.get('mean_watts') is not None:
                metrics[f'energy/{name}_watts'] = entry['mean_watts']
        elif 'mean_percent' in entry:
            metrics[f'energy/{name}_percent'] = entry['mean_percent']
    return metrics, unavailable


class EnergyMonitor(Callback):
    """Sample energy and utilisation at ``interval`` seconds (1 Hz by default) from ``FIT_START`` to ``FIT_END``.

    Only local rank 0 of each node samples (NVML and RAPL see the whole machine). ``summary`` holds the last summary.
    YAML: ``callbacks: {energy_monitor: {interval: 1.0}}``.
    """

    def __init__(self, interval: float = 1.0, sources: Optional[Sequence[Any]] = None):
        if not interval > 0:
            raise ValueError(f'interval must be > 0 seconds, got {interval!r}')
        self.interval = float(interval)
        self._sources = sources
        self.sampler: Optional[EnergySampler] = None
        self.summary: Optional[dict[str, Any]] = None

    def fit_start(self, state: State, logger: Logger) -> None:
        if dist.get_local_rank() != 0:
            return
        sources = list(self._sources) if self._sources is not None else default_sources()
        self.sampler = EnergySampler(sources, interval=self.interval).start()
        _, unavailable = flat_metrics({'seconds': 0.0, **{s.name: {'available': s.available, 'reason': s.reason}
                                                           for s in sources}})
        if unavailable:
            logger.log_hyperparameters(unavailable)

    def epoch_end(self, state: State, logger: Logger) -> None:
        if self.sampler is not None:
            self.sampler.sample()
            logger.log_metrics(flat_metrics(self.sampler.summary())[0])

    def fit_end(self, state: State, logger: Logger) -> None:
        if self.sampler is not None:
            self.summary = self.sampler.stop()
            self.sampler = None
            logger.log_metrics(flat_metrics(self.summary)[0])

    def close(self, state: State, logger: Logger) -> None:
        if self.sampler is not None:  # a fit that raised: stop the thread
            self.summary = self.sampler.stop()
            self.sampler = None
