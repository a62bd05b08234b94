"""Task schedules for parallel blockwise distillation against hand-worked cases."""

from __future__ import annotations

import pytest

from algorithms.blockwise import bin_packing, list_schedule, lower_bound, makespan, round_robin, simulate
from algorithms.blockwise.schedule import best_partition, split_makespan

# Five block tasks with measured times (seconds), in layer order
TIMES = {'b1': 7.0, 'b2': 5.0, 'b3': 4.0, 'b4': 3.0, 'b5': 3.0}


def test_round_robin_is_strided_and_blind_to_times():
    assert round_robin(list(TIMES), 2) == [['b1', 'b3', 'b5'], ['b2', 'b4']]
    assert makespan(round_robin(list(TIMES), 2), TIMES) == 14.0   # 7 + 4 + 3 against 5 + 3
    assert round_robin(['a'], 3) == [['a'], [], []]


def test_bin_packing_worst_fit_decreasing_by_hand():
    # decreasing: b1 7, b2 5, b3 4, b4 3, b5 3 -> w0 b1 (7); w1 b2 (5); w1 b3 (9); w0 b4 (10); w1 b5 (12)
    assert bin_packing(TIMES, 2) == [['b1', 'b4'], ['b2', 'b3', 'b5']]
    assert makespan(bin_packing(TIMES, 2), TIMES) == 12.0
    # three workers: w0 b1 7; w1 b2 5; w2 b3 4; w2 b4 7; w1 b5 8 -> makespan 8 (= total 22 / 3 rounded up by tasks)
    assert bin_packing(TIMES, 3) == [['b1'], ['b2', 'b5'], ['b3', 'b4']]
    assert makespan(bin_packing(TIMES, 3), TIMES) == 8.0


def test_list_schedule_takes_the_next_task_when_free():
    # queue in layer order: t=0 w0 b1 (till 7), w1 b2 (till 5); t=5 w1 b3 (till 9); t=7 w0 b4 (till 10);
    # t=9 w1 b5 (till 12)
    assert list_schedule(TIMES, 2, queue=list(TIMES)) == [['b1', 'b4'], ['b2', 'b3', 'b5']]
    # a bad queue order (short tasks first) is what dynamic scheduling cannot fix: 3,3,4,5 then 7 at the end
    late = list_schedule(TIMES, 2, queue=['b4', 'b5', 'b3', 'b2', 'b1'])
    assert makespan(late, TIMES) == 14.0  # w0: 3, 4, 7 (=14); w1: 3, 5 (=8)


def test_lower_bound_and_simulation():
    assert lower_bound(TIMES, 2) == 11.0 and lower_bound(TIMES, 8) == 7.0
    rows = simulate(TIMES, [1, 2, 4])
    assert [r['round_robin'] for r in rows] == [22.0, 14.0, 10.0]   # 4 workers: b1 + b5 = 10
    assert [r['bin_packing'] for r in rows] == [22.0, 12.0, 7.0]
    assert rows[1]['bin_packing_speedup'] == pytest.approx(22 / 12)
    assert all(r['bin_packing'] >= r['lower_bound'] and r['work_stealing'] >= r['lower_bound'] for r in rows)
    with pytest.raises(ValueError, match='workers'):
        round_robin(list(TIMES), 0)


def test_best_partition_and_halved_tasks_by_hand():
    # whole tasks: {7, 4} and {5, 3, 3} = 11, where bin packing gives 12; halves reach the same 11 (the bound)
    assert best_partition(TIMES, 2) == 11.0 and makespan(bin_packing(TIMES, 2), TIMES) == 12.0
    assert split_makespan(TIMES, 2) == 11.0
    # five equal tasks on two workers: whole, 3 against 2 (30 s, efficiency 50/60); in halves of 5 s, a piece whose
    # first half ran can go to either worker: 25 s, the bound
    equal = {k: 10.0 for k in 'abcde'}
    assert best_partition(equal, 2) == 30.0 and split_makespan(equal, 2) == 25.0
    # a halved task still runs its halves one after another: one 10 s task alone cannot go below 10 s on 2 workers
    assert split_makespan({'a': 10.0}, 2) == 10.0
    assert best_partition({}, 2) == 0.0
