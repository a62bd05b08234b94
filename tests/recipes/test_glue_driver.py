"""The GLUE driver (recipes/glue.py) on tiny local MNLI and RTE: it fine-tunes each task, evaluates MNLI on both
validation sets, starts RTE from the MNLI model when asked, writes the table, skips finished runs, finishes a run cut
off after its last checkpoint, and refuses bad specs in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import recipes.glue as glue
from recipes.core.errors import ConfigError
from tests.helpers.glue_text import write_glue, write_mlm_checkpoint, write_tiny_tokenizer

WORDS = [('film', 'fun'), ('movie', 'dull'), ('plot', 'fun'), ('story', 'dull')]


@pytest.fixture(scope='module')
def tok(tmp_path_factory) -> str:
    return write_tiny_tokenizer(tmp_path_factory.mktemp('tok'))


@pytest.fixture(scope='module')
def mlm_checkpoint(tmp_path_factory, tok) -> Path:
    return write_mlm_checkpoint(tmp_path_factory.mktemp('mlm'), tok)


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('glue')
    mnli = [{'premise': f'the {a} was {b}', 'hypothesis': f'it is {w}', 'label': i % 3}
            for i, ((a, b), w) in enumerate((p, w) for p in WORDS for w in ('good', 'bad', 'not good'))]
    for split in ('train', 'validation_matched', 'validation_mismatched'):
        write_glue(root, 'mnli', split, mnli)
    rte = [{'sentence1': f'the {a} was {b}', 'sentence2': f'a {a}', 'label': i % 2}  # one whole batch of 8
           for i, (a, b) in enumerate(WORDS * 2)]
    for split in ('train', 'validation'):
        write_glue(root, 'rte', split, rte)
    return root


def write_spec(folder: Path, data: Path, tok: str, pretrained: Path, **extra) -> Path:
    spec = {
        'name': 'tiny-glue', 'pretrained': str(pretrained), 'tasks': ['mnli', 'rte'], 'seeds': [5],
        'from_mnli': ['rte'], 'out_dir': str(folder / 'out'),
        'overrides': {'train_loader': {'source': 'local', 'path': str(data), 'tokenizer': tok, 'max_seq_len': 32},
                      'eval_loader.path': str(data), 'precision': 'fp32', 'global_train_batch_size': 8,
                      'global_eval_batch_size': 16, 'max_duration': '1ep', 'progress_bar': False},
        **extra,
    }
    path = folder / 'spec.yaml'
    path.write_text(yaml.safe_dump(spec))
    return path


def test_driver_runs_tasks_writes_the_table_and_resumes(tmp_path, data, tok, mlm_checkpoint, monkeypatch, capsys):
    spec_file = write_spec(tmp_path, data, tok, mlm_checkpoint)
    assert glue.main(['-f', str(spec_file)]) == 0
    out = tmp_path / 'out'
    mnli, rte = (json.loads((out / t / 'seed5' / glue.RESULT_FILE).read_text()) for t in ('mnli', 'rte'))
    # MNLI is evaluated on both validation sets, and its score is the mean of the two accuracies, in percent
    assert set(mnli['metrics']) == {'eval/Accuracy', 'eval_mismatched/Accuracy'}
    assert mnli['score'] == pytest.approx(50 * (mnli['metrics']['eval/Accuracy']
                                                + mnli['metrics']['eval_mismatched/Accuracy']))
    summary = json.loads((out / 'mnli' / 'seed5' / 'summary.json').read_text())
    assert summary['final_metrics'] == mnli['metrics']  # the values the run's own record holds
    # RTE started from the fine-tuned MNLI model, not from the masked LM
    rte_cfg = yaml.safe_load((out / 'rte' / 'seed5' / 'config.yaml').read_text())
    assert rte_cfg['model']['pretrained'] == str(out / 'mnli' / 'seed5' / 'checkpoints' / 'latest-rank0.pt')
    assert rte['seed'] == 5 and rte['score'] == pytest.approx(100 * rte['metrics']['eval/Accuracy'])
    table = json.loads((out / glue.TABLE_JSON).read_text())
    assert [row['task'] for row in table['tasks']] == ['mnli', 'rte']
    assert table['glue_score'] == pytest.approx((mnli['score'] + rte['score']) / 2)
    markdown = (out / glue.TABLE_MD).read_text()
    assert f"| **GLUE** (mean of 2 tasks) | | **{table['glue_score']:.2f}** | |" in markdown
    assert markdown in capsys.readouterr().out

    # the same command again: every run is finished, nothing trains
    def no_training(cfg):
        raise AssertionError(f"{cfg['run_name']} ran again")

    monkeypatch.setattr(glue, 'train_and_evaluate', no_training)
    assert glue.main(['-f', str(spec_file)]) == 0
    monkeypatch.undo()

    # a run cut off after its final checkpoint, before its result: the rerun evaluates it without training
    (out / 'rte' / 'seed5' / glue.RESULT_FILE).unlink()
    step = json.loads((out / 'rte' / 'seed5' / 'summary.json').read_text())['step']
    assert glue.main(['-f', str(spec_file)]) == 0
    again = json.loads((out / 'rte' / 'seed5' / glue.RESULT_FILE).read_text())
    assert again['metrics'] == pytest.approx(rte['metrics']) and again['step'] == step


def test_bad_specs_are_one_line_errors(tmp_path, data, tok, mlm_checkpoint, capsys):
    spec_file = write_spec(tmp_path, data, tok, mlm_checkpoint)
    cases = [
        (['pretrained=null'], r"^missing required key 'pretrained': the checkpoint of a bert_mlm run"),
        (['pretrained=/nowhere.pt'], r'^pretrained: checkpoint file not found: /nowhere.pt$'),
        (['tasks=[mnli,wnli]'], r"^tasks\[1\]: unknown GLUE task 'wnli'; allowed: mnli, qqp"),
        (['seeds=[]'], r'^seeds: expected a non-empty list of ints'),
        (['from_mnli=[mnli]'], r'^from_mnli: mnli cannot start from itself$'),
        (['recipe=yamls/glue/{task}_v2.yaml'], r'^recipe: YAML file not found for task mnli: .*mnli_v2.yaml$'),
        (['lr=0.1'], r"^unknown key 'lr'; allowed: from_mnli"),
    ]
    for overrides, expected in cases:
        with pytest.raises(ConfigError, match=expected) as excinfo:
            glue.load_spec(spec_file, overrides)
        assert '\n' not in str(excinfo.value)
    # a recipe written for another task
    spec = glue.load_spec(spec_file, ['recipe={mnli: yamls/glue/mnli.yaml, rte: yamls/glue/mrpc.yaml}'])
    with pytest.raises(ConfigError, match=r"mrpc.yaml: model.task is 'mrpc', but the driver runs it for task 'rte'$"):
        glue.task_config(spec, 'rte', 5, spec['pretrained'])
    # through the command line: status 2 and one error line, before anything runs
    assert glue.main(['-f', str(spec_file), 'tasks=[sst3]']) == 2
    assert capsys.readouterr().err == "error: tasks[0]: unknown GLUE task 'sst3'; allowed: mnli, qqp, qnli, sst2, " \
                                      'cola, stsb, mrpc, rte\n'
    assert not (tmp_path / 'out').exists()


def test_an_out_dir_of_another_checkpoint_is_refused(tmp_path, data, tok, mlm_checkpoint):
    spec = glue.load_spec(write_spec(tmp_path, data, tok, mlm_checkpoint, tasks=['rte'], from_mnli=[]))
    folder = glue.run_dir(spec, 'rte', 5)
    folder.mkdir(parents=True)
    (folder / 'config.yaml').write_text(yaml.safe_dump({'model': {'pretrained': '/other/ckpt.pt'}}))
    with pytest.raises(ConfigError, match=r'^out_dir: .*rte/seed5 was fine-tuned from /other/ckpt.pt, not '):
        glue.run(spec)


def test_a_sequence_length_beyond_the_model_is_refused_before_training(tmp_path, data, tok, mlm_checkpoint):
    spec = glue.load_spec(write_spec(tmp_path, data, tok, mlm_checkpoint), ['overrides.train_loader.max_seq_len=64'])
    with pytest.raises(ConfigError, match=r"^train_loader.max_seq_len: 64 is beyond the model's limit of 32 positions"):
        glue.run(spec)
    assert not (tmp_path / 'out').exists()


def test_the_committed_driver_specs_load(tmp_path, tok, mlm_checkpoint):
    """yamls/pipelines/glue/bert_base.yaml and tiny_local.yaml (base: the first) read as the driver reads them."""
    repo = Path(__file__).resolve().parents[2]
    full = glue.load_spec(repo / 'yamls/pipelines/glue/bert_base.yaml', [f'pretrained={mlm_checkpoint}'])
    assert full['tasks'] == ['mnli', 'qqp', 'qnli', 'sst2', 'cola', 'stsb', 'mrpc', 'rte']
    assert str(glue.recipe_path(full, 'rte')).endswith('yamls/glue/rte.yaml')
    tiny = glue.load_spec(repo / 'yamls/pipelines/glue/tiny_local.yaml', [f'pretrained={mlm_checkpoint}'])
    assert tiny['tasks'] == ['sst2'] and tiny['seeds'] == [17, 18, 19] and tiny['out_dir'] == 'runs/glue-tiny-local'
    assert str(glue.recipe_path(tiny, 'sst2')).endswith('yamls/glue/sst2_local_tiny.yaml')
