"""The one parser of Composer time strings (``90ep``, ``70000ba``, ``286720000sp``, ``1000tok``, ``0.3dur``).

Algorithms (distillation windows, pruning schedules), recipes (``max_duration``, intervals) and benchmarks (sorting
durations) all read time strings through :func:`parse_time`, so they accept and refuse exactly the same strings.
"""

from __future__ import annotations

from typing import Any, Union

from composer.core import State, Time, TimeUnit

__all__ = ['parse_time', 'reached']

EXAMPLES = "'90ep', '70000ba', '286720000sp', '0.3dur'"


def parse_time(value: Union[str, int, Time, Any], name: str = 'time', allow_zero: bool = True) -> Time:
    """``value`` as a Composer ``Time``; an int means epochs. Raises ``ValueError`` naming ``name`` for anything
    else, for a negative value, and for zero when ``allow_zero`` is False."""
    if isinstance(value, Time):
        time = value
    elif isinstance(value, int) and not isinstance(value, bool):
        time = Time.from_input(value, 'ep')
    elif isinstance(value, str):
        try:
            time = Time.from_timestring(value)
        except (ValueError, TypeError):
            raise ValueError(f'{name}: malformed duration {value!r}; expected a number with a unit: ep, ba, sp, '
                             f'tok or dur (e.g. {EXAMPLES})') from None
    else:
        raise ValueError(f'{name}: expected a Composer time string such as {EXAMPLES}, got {value!r}')
    if time.value < 0:
        raise ValueError(f'{name}: {value!r} must not be negative')
    if not allow_zero and time.value == 0:
        raise ValueError(f'{name}: {value!r} must be positive (a run of zero length trains nothing)')
    return time


def reached(time: Time, state: State) -> bool:
    """Whether training has reached ``time`` (the timestamp counts the batches completed before the current one).

    ``dur`` is a fraction of ``max_duration``; with an epoch-long ``max_duration`` it is resolved per batch, so
    ``'0.3dur'`` of 2 epochs falls mid-epoch."""
    if time.unit != TimeUnit.DURATION:
        return state.timestamp.get(time.unit).value >= time.value
    max_duration = state.max_duration
    if max_duration is None:
        raise ValueError(f"a '{time}' time needs the trainer's max_duration")
    if max_duration.unit == TimeUnit.EPOCH and state.dataloader_len is not None and int(state.dataloader_len) > 0:
        elapsed = state.timestamp.batch.value / (max_duration.value * int(state.dataloader_len))
    else:
        elapsed = state.timestamp.get(max_duration.unit).value / max_duration.value
    return elapsed >= time.value
