"""Energy, power and utilisation of a run, sampled at 1 Hz: GPU energy through NVML, CPU package energy through
RAPL (powercap), CPU utilisation from ``/proc/stat``.

The seed's chapter IV reports, for parallel blockwise distillation, not only the speed-up but the energy it costs:
*greenup* ``E_serial / E_parallel`` and *powerup* ``P_parallel / P_serial`` (:func:`parallel_metrics`). Each source
reads a cumulative counter where the hardware keeps one, so a delta over the run is exact whatever the sampling
rate, and the 1 Hz samples give the power curve:

* :class:`NvmlEnergy`: ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since the driver loaded, Volta and
  newer) per GPU; on older GPUs, the integral of ``nvmlDeviceGetPowerUsage`` (milliwatts) over the samples. Needs
  ``nvidia-ml-py`` (``pip install nvidia-ml-py``).
* :class:`RaplEnergy`: ``/sys/class/powercap/intel-rapl:<n>/energy_uj`` of each CPU package (AMD's RAPL appears there
  too), wrapping at ``max_energy_range_uj``. Often readable by root only.
* :class:`CpuUtilisation`: busy share of all CPUs from the ``cpu`` line of ``/proc/stat`` (busy = all but idle and
  iowait).

A source that cannot be read is **unavailable**: it is reported with ``available: false`` and the reason, and its
values are ``None``, never 0 J.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence

__all__ = ['EnergySource', 'NvmlEnergy', 'RaplEnergy', 'CpuUtilisation', 'EnergySampler', 'parallel_metrics',
           'default_sources']

log = logging.getLogger(__name__)


class EnergySource(Protocol):
    """A named reading: ``read()`` returns a cumulative value (joules; for utilisation, busy and total jiffies) or
    raises ``OSError``/``RuntimeError`` when it cannot be read; ``available``/``reason`` say whether it could at start."""

    name: str
    available: bool
    reason: str

    def read(self) -> Any: ...


class NvmlEnergy:
    """Cumulative energy of every visible GPU, in joules (``{index: J}``), from NVML.

    Args:
        nvml: the ``pynvml`` module (tests pass a fake); ``None`` imports ``pynvml`` from ``nvidia-ml-py``.
    """

    name = 'gpu'

    def __init__(self, nvml: Any = None):
        self.available, self.reason, self.handles, self.counter = False, '', [], True
        try:
            if nvml is None:
                import pynvml as nvml  # nvidia-ml-py
            nvml.nvmlInit()
            self.nvml = nvml
            self.handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
            if not self.handles:
                raise RuntimeError('NVML sees no GPU')
            try:
                for h in self.handles:
                    nvml.nvmlDeviceGetTotalEnergyConsumption(h)
            except Exception:  # pre-Volta: no energy counter; integrate power instead
                self.counter = False
            self.available = True
        except ImportError:
            self.reason = 'nvidia-ml-py is not installed'
        except Exception as e:  # no driver, no GPU, no permission
            self.reason = f'NVML: {e}'

    def read(self) -> dict[int, float]:
        """Joules per GPU (the energy counter) or, without one, watts per GPU (to be integrated)."""
        if self.counter:
            return {i: self.nvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1000.0 for i, h in enumerate(self.handles)}
        return {i: self.nvml.nvmlDeviceGetPowerUsage(h) / 1000.0 for i, h in enumerate(self.handles)}


class RaplEnergy:
    """Cumulative energy of each CPU package in joules (``{package: J}``), from powercap's RAPL counters."""

    name = 'cpu_package'

    def __init__(self, root: str | Path = '/sys/class/powercap'):
        self.available, self.reason, self.zones = False, '', []
        root = Path(root)
        zones = sorted(p for p in root.glob('intel-rapl:*') if p.name.count(':') == 1) if root.is_dir() else []
        if not zones:
            self.reason = f'no RAPL package zones under {root}'
            return
        try:
            for zone in zones:
                (zone / 'energy_uj').read_text()
            self.zones = zones
            self.available = True
        except OSError as e:
            self.reason = f'RAPL not readable ({e.strerror or e}); often root only'

    def read(self) -> dict[str, tuple[float, float]]:
        """``{zone name: (energy J, wrap range J)}``."""
        out = {}
        for zone in self.zones:
            energy = int((zone / 'energy_uj').read_text()) / 1e6
            wrap_file = zone / 'max_energy_range_uj'
            wrap = int(wrap_file.read_text()) / 1e6 if wrap_file.exists() else float('inf')
            out[zone.name] = (energy, wrap)
        return out


class CpuUtilisation:
    """Busy and total jiffies of all CPUs, from the aggregate ``cpu`` line of ``/proc/stat``."""

    name = 'cpu_util'

    def __init__(self, path: str | Path = '/proc/stat'):
        self.path = Path(path)
        self.available, self.reason = False, ''
        try:
            self.read()
            self.available = True
        except (OSError, ValueError) as e:
            self.reason = f'{self.path} not readable: {e}'

    def read(self) -> tuple[int, int]:
        for line in self.path.read_text().splitlines():
            if line.startswith('cpu '):
                values = [int(v) for v in line.split()[1:]]
                idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
                return sum(values) - idle, sum(values)
        raise ValueError('no aggregate cpu line')


def default_sources() -> list[EnergySource]:
    return [NvmlEnergy(), RaplEnergy(), CpuUtilisation()]


@dataclass
class EnergySampler:
    """Sample ``sources`` every ``interval`` seconds in a background thread between :meth:`start` and :meth:`stop`
    (or as a context manager); :meth:`summary` gives the energy, mean power and utilisation of the span.

    ``clock`` and ``sleep`` are injectable so that the arithmetic is tested without waiting.
    """

    sources: Sequence[EnergySource] = field(default_factory=default_sources)
    interval: float = 1.0
    clock: Callable[[], float] = time.monotonic
    samples: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def sample(self) -> None:
        """Take one sample of every available source now."""
        values = {}
        for source in self.sources:
            if source.available:
                try:
                    values[source.name] = source.read()
                except (OSError, RuntimeError, ValueError) as e:  # a reading that fails mid-run: skipped
                    log.debug('%s: %s', source.name, e)
        self.samples.append((self.clock(), values))

    def start(self) -> 'EnergySampler':
        self.samples.clear()
        self._stop.clear()
        self.sample()
        self._thread = threading.Thread(target=self._loop, name='energy-sampler', daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.sample()
        return self.summary()

    def __enter__(self) -> 'EnergySampler':
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- arithmetic -----------------------------------------------------------------------------------------------
    def _series(self, name: str) -> list[tuple[float, Any]]:
        return [(t, v[name]) for t, v in self.samples if name in v]

    def summary(self) -> dict[str, Any]:
        """``{'seconds', 'samples', '<source>': {...}}``; an unavailable source is ``{'available': False, 'reason'}``."""
        if len(self.samples) < 2:
            raise RuntimeError('fewer than two samples: start() and stop() the sampler around the work')
        seconds = self.samples[-1][0] - self.samples[0][0]
        out: dict[str, Any] = {'seconds': seconds, 'samples': len(self.samples)}
        for source in self.sources:
            series = self._series(source.name)
            if not source.available or len(series) < 2:
                out[source.name] = {'available': False,
                                    'reason': source.reason or 'fewer than two readings during the run'}
                continue
            if source.name == 'cpu_util':
                (_, (busy0, total0)), (_, (busy1, total1)) = series[0], series[-1]
                out[source.name] = {'available': True,
                                    'mean_percent': 100.0 * (busy1 - busy0) / max(1, total1 - total0)}
            elif source.name == 'gpu' and not getattr(source, 'counter', True):
                joules = {i: _integrate([(t, w[i]) for t, w in series]) for i in series[0][1]}
                out[source.name] = _energy_entry(joules, seconds, 'power integrated at the sampling rate')
            elif source.name == 'gpu':
                joules = {i: series[-1][1][i] - series[0][1][i] for i in series[0][1]}
                out[source.name] = _energy_entry(joules, seconds, 'NVML energy counter')
            else:  # RAPL: sum the deltas between samples, adding the wrap range when a counter wrapped
                joules = {z: _wrapped_delta([(v[z][0], v[z][1]) for _, v in series]) for z in series[0][1]}
                out[source.name] = _energy_entry(joules, seconds, 'RAPL energy counter')
        return out


def _integrate(points: list[tuple[float, float]]) -> float:
    """Trapezoidal integral of watts over seconds."""
    return sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in zip(points, points[1:]))


def _wrapped_delta(readings: list[tuple[float, float]]) -> float:
    total = 0.0
    for (e0, _), (e1, wrap) in zip(readings, readings[1:]):
        total += e1 - e0 if e1 >= e0 else e1 + wrap - e0
    return total


def _energy_entry(joules: dict[Any, float], seconds: float, method: str) -> dict[str, Any]:
    total = sum(joules.values())
    return {'available': True, 'joules': total, 'per_device_joules': joules,
            'mean_watts': total / seconds if seconds > 0 else None, 'method': method}


def parallel_metrics(serial_s: float, parallel_s: float, workers: int, serial_j: Optional[float] = None,
                     parallel_j: Optional[float] = None) -> dict[str, Optional[float]]:
    """The seed's chapter-IV measures of a parallel run against the serial one.

    speedup ``T_s / T_p``; efficiency ``speedup / workers``; greenup ``E_s / E_p`` (> 1: the parallel run used less
    energy); powerup ``P_p / P_s = (E_p / T_p) / (E_s / T_s) = speedup / greenup`` (how much more power it drew).
    Energy measures are ``None`` when either energy is unknown.
    """
    if serial_s <= 0 or parallel_s <= 0 or workers < 1:
        raise ValueError('times must be > 0 and workers >= 1')
    speedup = serial_s / parallel_s
    greenup = powerup = None
    if serial_j is not None and parallel_j is not None and serial_j > 0 and parallel_j > 0:
        greenup = serial_j / parallel_j
        powerup = (parallel_j / parallel_s) / (serial_j / serial_s)
    return {'speedup': speedup, 'efficiency': speedup / workers, 'greenup': greenup, 'powerup': powerup}
