"""The energy sampler's arithmetic on fake sources (NVML counter and power, RAPL with a wrap, /proc/stat), the
parallel-run measures by hand, and the Composer callback logging nothing unmeasured as a number."""

from __future__ import annotations

import math

import pytest
import torch
from composer import Trainer
from composer.loggers import InMemoryLogger

from algorithms.profiling import (CpuUtilisation, EnergyMonitor, EnergySampler, NvmlEnergy, RaplEnergy,
                                  flat_metrics, parallel_metrics)
from tests.helpers.algorithm_settings import image_loader, tiny_net


class FakeNvml:
    """Two GPUs whose energy counters (mJ) or power (mW) are set by the test."""

    def __init__(self, counter: bool = True):
        self.counter, self.energy_mj, self.power_mw = counter, [0, 0], [0, 0]

    def nvmlInit(self):
        pass

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        if not self.counter:
            raise RuntimeError('not supported')
        return self.energy_mj[h]

    def nvmlDeviceGetPowerUsage(self, h):
        return self.power_mw[h]


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_nvml_counter_delta_and_mean_power():
    nvml, clock = FakeNvml(), Clock()
    sampler = EnergySampler([NvmlEnergy(nvml)], clock=clock)
    nvml.energy_mj = [5_000, 1_000]
    sampler.sample()
    clock.t, nvml.energy_mj = 10.0, [5_000 + 3_000_000, 1_000 + 1_000_000]   # +3000 J and +1000 J in 10 s
    sampler.sample()
    gpu = sampler.summary()['gpu']
    assert gpu['available'] and gpu['joules'] == pytest.approx(4000.0) and gpu['mean_watts'] == pytest.approx(400.0)
    assert gpu['per_device_joules'] == {0: pytest.approx(3000.0), 1: pytest.approx(1000.0)}
    assert gpu['method'] == 'NVML energy counter'


def test_nvml_without_counter_integrates_power_by_trapezoids():
    nvml, clock = FakeNvml(counter=False), Clock()
    source = NvmlEnergy(nvml)
    assert source.available and not source.counter
    sampler = EnergySampler([source], clock=clock)
    for t, watts in ((0.0, 100), (1.0, 300), (3.0, 300)):   # GPU 0: (100+300)/2*1 + 300*2 = 800 J; GPU 1 idle
        clock.t, nvml.power_mw = t, [watts * 1000, 0]
        sampler.sample()
    gpu = sampler.summary()['gpu']
    assert gpu['joules'] == pytest.approx(800.0) and gpu['per_device_joules'][1] == 0.0
    assert 'integrated' in gpu['method']


def test_rapl_wraps_and_unavailable_is_never_zero(tmp_path):
    zone = tmp_path / 'intel-rapl:0'
    zone.mkdir()
    (zone / 'max_energy_range_uj').write_text('10000000\n')   # wraps at 10 J
    (tmp_path / 'intel-rapl:0:0').mkdir()                      # a sub-zone (core): not a package, not summed
    clock = Clock()
    assert not RaplEnergy(tmp_path).available   # no energy_uj yet: unavailable, with its reason
    assert 'RAPL' in RaplEnergy(tmp_path).reason or 'zones' in RaplEnergy(tmp_path / 'none').reason
    readings = [9_000_000, 9_500_000, 1_500_000]   # 9.0 -> 9.5 (+0.5 J) -> wrapped to 1.5 (+2.0 J): 2.5 J in 5 s
    (zone / 'energy_uj').write_text(str(readings[0]))
    rapl = RaplEnergy(tmp_path)
    sampler = EnergySampler([rapl], clock=clock)
    for t, uj in zip((0.0, 2.0, 5.0), readings):
        clock.t = t
        (zone / 'energy_uj').write_text(str(uj))
        sampler.sample()
    summary = sampler.summary()
    assert summary['cpu_package']['joules'] == pytest.approx(2.5)
    assert summary['cpu_package']['mean_watts'] == pytest.approx(0.5)
    metrics, unavailable = flat_metrics({'seconds': 5.0, 'gpu': {'available': False, 'reason': 'no NVML'},
                                         'cpu_package': summary['cpu_package']})
    assert 'energy/gpu_joules' not in metrics and unavailable == {'energy/gpu': 'unavailable: no NVML'}
    assert metrics['energy/cpu_package_joules'] == pytest.approx(2.5)


def test_cpu_utilisation_from_proc_stat(tmp_path):
    stat = tmp_path / 'stat'
    # user nice system idle iowait irq softirq steal: busy = all but idle and iowait
    stat.write_text('cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n')
    clock = Clock()
    source = CpuUtilisation(stat)
    sampler = EnergySampler([source], clock=clock)
    sampler.sample()
    stat.write_text('cpu  400 0 150 900 50 0 0 0 0 0\n')   # +400 busy of +500 total: 80%
    clock.t = 1.0
    sampler.sample()
    assert sampler.summary()['cpu_util']['mean_percent'] == pytest.approx(80.0)
    assert not CpuUtilisation(tmp_path / 'missing').available


def test_parallel_metrics_by_hand():
    # serial 100 s and 1000 J; parallel on 2 workers 55 s and 1100 J
    m = parallel_metrics(100.0, 55.0, 2, 1000.0, 1100.0)
    assert m['speedup'] == pytest.approx(100 / 55) and m['efficiency'] == pytest.approx(100 / 55 / 2)
    assert m['greenup'] == pytest.approx(1000 / 1100)
    assert m['powerup'] == pytest.approx((1100 / 55) / (1000 / 100))
    assert m['powerup'] == pytest.approx(m['speedup'] / m['greenup'])
    assert parallel_metrics(10.0, 5.0, 2)['greenup'] is None   # energy unknown: not a number
    with pytest.raises(ValueError):
        parallel_metrics(0.0, 1.0, 1)


def test_energy_monitor_logs_measured_sources_only(tmp_path):
    nvml = FakeNvml()
    stat = tmp_path / 'stat'
    stat.write_text('cpu  1 0 1 10 0 0 0 0 0 0\n')
    sources = [NvmlEnergy(nvml), RaplEnergy(tmp_path / 'none'), CpuUtilisation(stat)]
    monitor = EnergyMonitor(interval=0.05, sources=sources)
    memory = InMemoryLogger()
    trainer = Trainer(model=tiny_net(0), train_dataloader=image_loader(), max_duration='2ep', callbacks=[monitor],
                      loggers=[memory], optimizers=torch.optim.SGD(tiny_net(0).parameters(), lr=0.1))
    trainer.fit()
    summary = monitor.summary
    assert summary is not None and summary['gpu']['available'] and not summary['cpu_package']['available']
    assert 'energy/gpu_joules' in memory.data and 'energy/cpu_package_joules' not in memory.data
    assert memory.hyperparameters['energy/cpu_package'].startswith('unavailable')
    assert math.isfinite(summary['seconds']) and summary['samples'] >= 2
    with pytest.raises(ValueError, match='interval'):
        EnergyMonitor(interval=0)


def test_energy_check_cells_format_a_source_or_say_why_it_is_unavailable():
    from benchmarks.measurements.energy_check import measured

    gpu = {'available': True, 'joules': 1058.405, 'mean_watts': 70.538, 'method': 'NVML energy counter'}
    assert measured(gpu, '{joules:.0f} ({mean_watts:.0f} W)') == '1058 (71 W)'
    assert measured({'available': False, 'reason': 'no RAPL package zones'}, '{joules:.0f}') == \
        'unavailable: no RAPL package zones'
