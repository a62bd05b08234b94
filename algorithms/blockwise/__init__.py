"""Blockwise distillation (the seed's chapter IV): replace a teacher's costly convolutions by cheaper blocks, each
trained to reproduce its layer from the teacher's own activations.

* :mod:`.layers`: which layers are replaceable (a traced forward pass; conv + its batch norm).
* :mod:`.blocks`: the replacement blocks (``ds2`` default, ``ds3``, ``ds2_skip``, ``ds3_skip``).
* :mod:`.prefix`: a teacher built only up to one layer; :func:`run_until` stops a forward pass early.
* :mod:`.local_training`: the local MSE loss, RMSprop with exponential decay, best-check selection, threshold.
* :mod:`.assembly`: splicing blocks in (for a check, or the final student) and freezing for fine-tuning.
* :mod:`.craft`: sequential craft distillation, top-down or bottom-up.
* :mod:`.task`: one parallel task (prefix -> block -> spliced checks -> durable result).
* :mod:`.schedule`, :mod:`.executor`, :mod:`.cluster`: round robin, bin packing and work stealing on Dask.

The driver that reads a YAML, trains the teacher, runs the tasks, assembles and fine-tunes the student is
``recipes/blockwise.py``; the method card is ``algorithms/blockwise/README.md``. Copy this folder with
``algorithms/distillation/`` and ``algorithms/common/``.
"""

from .assembly import assemble, freeze, replace_module, splice, spliced
from .blocks import BLOCKS, ReplacementBlock, build_block
from .craft import ORDERS, craft_sequential
from .executor import POLICIES, RunOutcome, ScheduleSettings, run_tasks
from .layers import ReplaceableLayer, find_replaceable, module_macs, trace
from .local_training import BlockResult, LocalTrainingSettings, fit_block, local_loss
from .prefix import TeacherPrefix, run_until
from .schedule import bin_packing, list_schedule, lower_bound, makespan, round_robin, simulate
from .task import BlockTask, accuracy, block_path, load_block, run_block_task

__all__ = ['assemble', 'freeze', 'replace_module', 'splice', 'spliced', 'BLOCKS', 'ReplacementBlock', 'build_block',
           'ORDERS', 'craft_sequential', 'POLICIES', 'RunOutcome', 'ScheduleSettings', 'run_tasks',
           'ReplaceableLayer', 'find_replaceable', 'module_macs', 'trace', 'BlockResult', 'LocalTrainingSettings',
           'fit_block', 'local_loss', 'TeacherPrefix', 'run_until', 'round_robin', 'bin_packing', 'list_schedule',
           'makespan', 'lower_bound', 'simulate', 'BlockTask', 'accuracy', 'block_path', 'load_block',
           'run_block_task']
