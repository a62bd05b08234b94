"""Profiling of runs: energy and power (GPU through NVML, CPU package through RAPL), CPU utilisation, sampled at
1 Hz around any code (:class:`EnergySampler`) or a whole Composer fit (:class:`EnergyMonitor`), and the seed's
chapter-IV measures of a parallel run (speed-up, efficiency, greenup, powerup). A source that cannot be read is
reported as unavailable, never as zero. NVML needs ``nvidia-ml-py``.
"""

from .energy import CpuUtilisation, EnergySampler, NvmlEnergy, RaplEnergy, default_sources, parallel_metrics
from .energy_monitor import EnergyMonitor, flat_metrics

__all__ = ['EnergySampler', 'EnergyMonitor', 'NvmlEnergy', 'RaplEnergy', 'CpuUtilisation', 'default_sources',
           'parallel_metrics', 'flat_metrics']
