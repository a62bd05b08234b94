"""Tests of algorithms/distillation: losses against hand computations, the teacher pool's sampling, and the
Composer algorithm inside real (tiny, CPU) Trainer runs: loss weighting, the window, teacher isolation, masked LMs,
resume, and teacher loading from a real checkpoint."""

from __future__ import annotations

import copy
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from composer import Callback, Trainer
from composer.loggers import InMemoryLogger
from composer.models import ComposerClassifier

from algorithms.distillation import (
    KD_LOSSES,
    KnowledgeDistillation,
    TeacherPool,
    add_distillation_loss,
    kl_divergence_loss,
    load_teacher_weights,
    mse_logits_loss,
)

README = Path(__file__).resolve().parents[2] / 'algorithms' / 'distillation' / 'README.md'


# --- helpers ------------------------------------------------------------------------------------------------------
def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_kd_kl(s, t, temperature):
    """KL(p_t || p_s) per row, mean over rows, times T^2, in float64."""
    p_t, p_s = np_softmax(t / temperature), np_softmax(s / temperature)
    return float((p_t * (np.log(p_t) - np.log(p_s))).sum(-1).mean() * temperature**2)


class Net(nn.Module):
    """A tiny MLP that records (tag, training-mode) at each forward when given a log."""

    def __init__(self, tag=None, log=None, hidden=16):
        super().__init__()
        self.tag, self.log = tag, log
        self.fc1, self.fc2 = nn.Linear(8, hidden), nn.Linear(hidden, 3)

    def forward(self, x):
        if self.log is not None:
            self.log.append((self.tag, self.training))
        return self.fc2(torch.relu(self.fc1(x)))


def loader(num_batches=10, batch_size=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = num_batches * batch_size
    data = TensorDataset(torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g))
    return DataLoader(data, batch_size=batch_size, shuffle=False)


def student(seed=0):
    torch.manual_seed(seed)
    return ComposerClassifier(Net(), num_classes=3)


def trainer(model, algorithm, max_duration, dataloader=None, **kwargs):
    return Trainer(model=model, train_dataloader=dataloader or loader(), max_duration=max_duration,
                   algorithms=[algorithm], device='cpu', progress_bar=False, log_to_console=False, seed=17, **kwargs)


class GradCapture(Callback):
    """The student's gradients right after the backward pass of the last step."""

    def after_backward(self, state, logger):
        self.grads = [p.grad.clone() for p in state.model.parameters()]


class StepRecorder(Callback):
    """Per optimizer step: the teacher forwards (tag, training) logged by the counting teachers during it."""

    def __init__(self, log):
        self.log, self.seen, self.steps = log, 0, {}

    def batch_end(self, state, logger):
        self.steps[int(state.timestamp.batch) - 1] = self.log[self.seen:]
        self.seen = len(self.log)


# --- losses -------------------------------------------------------------------------------------------------------
def test_kl_matches_hand_computation_direction_and_t_squared():
    s = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    t = np.array([[0.3, 1.5, 0.2], [-1.0, 2.0, 0.5]])
    for temperature in (1.0, 2.0, 4.0):
        got = kl_divergence_loss(torch.tensor(s), torch.tensor(t), temperature=temperature).item()
        assert got == pytest.approx(np_kd_kl(s, t, temperature), rel=1e-5)
    # The T^2 factor: at T=4 the value is 16x the plain KL of the softened distributions.
    p_t, p_s = np_softmax(t / 4), np_softmax(s / 4)
    plain = (p_t * (np.log(p_t) - np.log(p_s))).sum(-1).mean()
    assert kl_divergence_loss(torch.tensor(s), torch.tensor(t), 4.0).item() == pytest.approx(16 * plain, rel=1e-5)
    # The teacher is the target: swapping the arguments gives KL(p_s || p_t), a different number.
    swapped = kl_divergence_loss(torch.tensor(t), torch.tensor(s), temperature=2.0).item()
    assert swapped == pytest.approx(np_kd_kl(t, s, 2.0), rel=1e-5)
    assert abs(swapped - np_kd_kl(s, t, 2.0)) > 1e-3
    # Zero when the student matches the teacher; a gradient flows to the student only.
    s_t = torch.tensor(s, requires_grad=True)
    assert kl_divergence_loss(s_t, s_t.detach()).item() == pytest.approx(0.0, abs=1e-6)
    kl_divergence_loss(s_t, torch.tensor(t)).backward()
    assert s_t.grad is not None and s_t.grad.abs().sum() > 0


def test_mse_matches_hand_computation():
    s = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    t = np.array([[0.3, 1.5, 0.2], [-1.0, 2.0, 0.5]])
    assert mse_logits_loss(torch.tensor(s), torch.tensor(t)).item() == pytest.approx(((s - t)**2).mean())
    assert set(KD_LOSSES) == {'kl', 'mse'}


def test_masking_counts_only_labelled_positions():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 5, 7, generator=g), torch.randn(2, 5, 7, generator=g)
    labels = torch.full((2, 5), -100)
    labels[0, 1], labels[0, 3], labels[1, 4] = 4, 2, 6
    mask = labels != -100
    rows = mask.numpy()
    s_np, t_np = s.numpy().astype(np.float64), t.numpy().astype(np.float64)
    assert kl_divergence_loss(s, t, 2.0, mask=mask).item() == pytest.approx(np_kd_kl(s_np[rows], t_np[rows], 2.0),
                                                                            rel=1e-5)
    assert mse_logits_loss(s, t, mask=mask).item() == pytest.approx(((s_np[rows] - t_np[rows])**2).mean(), rel=1e-5)
    # Unmasked [N, L, C] = every position a row; differs from the masked value.
    all_rows = np_kd_kl(s_np.reshape(-1, 7), t_np.reshape(-1, 7), 2.0)
    assert kl_divergence_loss(s, t, 2.0).item() == pytest.approx(all_rows, rel=1e-5)
    assert abs(all_rows - np_kd_kl(s_np[rows], t_np[rows], 2.0)) > 1e-3
    # No labelled position: zero, not NaN.
    assert kl_divergence_loss(s, t, mask=torch.zeros(2, 5, dtype=torch.bool)).item() == 0.0


# --- teacher pool -------------------------------------------------------------------------------------------------
def pool(mode, n=4, **kwargs):
    return TeacherPool([nn.Linear(8, 3) for _ in range(n)], mode=mode, **kwargs)


def test_random_1_is_uniform_and_deterministic_by_seed():
    p = pool('random_1', seed=3)
    draws = [p.select() for _ in range(4000)]
    assert all(len(d) == 1 for d in draws)
    counts = np.bincount([d[0] for d in draws], minlength=4)
    assert counts.min() > 900 and counts.max() < 1100, counts  # expected 1000 each, sd ~27
    again = pool('random_1', seed=3)
    assert [again.select() for _ in range(4000)] == draws
    other = pool('random_1', seed=4)
    assert [other.select() for _ in range(50)] != draws[:50]


def test_random_k_draws_without_replacement():
    p = pool('random_k', n=5, k=3, seed=0)
    draws = [p.select() for _ in range(2000)]
    assert all(len(set(d)) == 3 and all(0 <= i < 5 for i in d) for d in draws)
    counts = np.bincount([i for d in draws for i in d], minlength=5)
    assert np.all(np.abs(counts - 2000 * 3 / 5) < 100), counts
    assert len({tuple(d) for d in draws}) == 10  # all C(5,3) subsets occur


def test_state_dict_round_trip_restores_the_sequence():
    p = pool('random_k', n=6, k=2, seed=11)
    for _ in range(5):
        p.select()
    saved = copy.deepcopy(p.state_dict())
    expected = [p.select() for _ in range(20)]
    restored = pool('random_k', n=6, k=2, seed=999)  # a different seed: the state must win
    restored.load_state_dict(saved)
    assert [restored.select() for _ in range(20)] == expected
    fresh = pool('random_k', n=6, k=2, seed=11)
    assert [fresh.select() for _ in range(20)] != expected  # the restored sequence is not the start again


def test_greedy_topk_and_all_are_fixed():
    p = pool('greedy_topk', k=2, scores=[0.1, 0.9, 0.5, 0.7])
    assert p.select() == [1, 3] and p.select() == [1, 3]
    assert pool('all').select() == [0, 1, 2, 3]


def test_pool_averages_logits_frozen_eval_no_grad():
    teachers = [nn.Sequential(nn.Linear(8, 3), nn.Dropout(0.5)) for _ in range(3)]
    p = TeacherPool(teachers, mode='all')
    x = torch.randn(5, 8)
    expected = torch.stack([t[0](x) for t in teachers]).mean(0)
    out = p.logits(x)
    assert torch.allclose(out, expected, atol=1e-6)  # dropout off: eval mode
    assert not out.requires_grad
    assert all(not q.requires_grad for t in teachers for q in t.parameters())
    assert torch.allclose(p.logits(x, [2]), teachers[2][0](x), atol=1e-6)


@pytest.mark.parametrize('kwargs, message', [
    (dict(mode='best'), 'unknown pool mode'),
    (dict(mode='random_k'), 'needs k'),
    (dict(mode='random_k', k=5), 'between 1 and'),
    (dict(mode='random_k', k=0), 'between 1 and'),
    (dict(mode='greedy_topk', k=2), 'needs scores'),
    (dict(mode='greedy_topk', k=2, scores=[1.0, 2.0]), 'one score per teacher'),
    (dict(mode='all', k=2), "mode 'all'"),
    (dict(mode='random_1', k=2), "mode 'random_1'"),
])
def test_pool_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pool(**kwargs)
    with pytest.raises(ValueError, match='at least one teacher'):
        TeacherPool([])


@pytest.mark.parametrize('kwargs, message', [
    (dict(kd_loss='cosine'), 'unknown kd_loss'),
    (dict(kd_loss_weight=-1.0), 'kd_loss_weight'),
    (dict(temperature=0.0), 'temperature'),
    (dict(start='soon'), 'start: malformed'),
    (dict(end='0.5xx'), 'end: malformed'),
    (dict(start='0.6dur', end='0.3dur'), 'must be after start'),
    (dict(start='10ba', end='10ba'), 'must be after start'),
])
def test_algorithm_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        KnowledgeDistillation([nn.Linear(8, 3)], **kwargs)


# --- the algorithm in a Trainer -----------------------------------------------------------------------------------
def test_total_is_weighted_sum_logged_and_backpropagated():
    torch.manual_seed(1)
    teacher = ComposerClassifier(Net(), num_classes=3)
    model = student()
    initial = copy.deepcopy(model)
    kd = KnowledgeDistillation([teacher], kd_loss='kl', kd_loss_weight=0.7, temperature=2.0)
    logs, grads = InMemoryLogger(), GradCapture()
    t = trainer(model, kd, '1ba', loggers=[logs], callbacks=[grads])
    t.fit()

    loss = t.state.loss
    assert set(loss) == {'total', 'ce', 'kd'}
    assert loss['total'].item() == pytest.approx(0.7 * loss['kd'].item() + loss['ce'].item(), rel=1e-6)
    x, y = next(iter(loader()))
    s_logits = initial((x, y))
    with torch.no_grad():
        t_logits = teacher((x, y))
    assert loss['kd'].item() == pytest.approx(
        np_kd_kl(s_logits.detach().double().numpy(), t_logits.double().numpy(), 2.0), rel=1e-5)
    assert loss['ce'].item() == pytest.approx(F.cross_entropy(s_logits, y).item(), rel=1e-5)
    for key in ('loss/train/total', 'loss/train/ce', 'loss/train/kd', 'kd/teachers_per_step'):
        assert key in logs.data, key
    assert float(logs.most_recent_values['loss/train/kd']) == pytest.approx(loss['kd'].item(), rel=1e-6)

    # The gradient the trainer applied is the gradient of lambda * kd + ce (not of ce alone).
    reference = F.cross_entropy(s_logits, y) + 0.7 * kl_divergence_loss(s_logits, t_logits, 2.0)
    reference.backward()
    for (name, p_ref), grad in zip(initial.named_parameters(), grads.grads, strict=True):
        assert torch.allclose(grad, p_ref.grad, atol=1e-6), name


def test_teachers_are_isolated_from_the_student():
    log = []
    teachers = [ComposerClassifier(Net(tag=i, log=log), num_classes=3) for i in range(2)]
    kd = KnowledgeDistillation(teachers, pool_mode='all')
    t = trainer(student(), kd, '2ba')
    t.fit()
    teacher_params = {id(p) for teacher in teachers for p in teacher.parameters()}
    assert all(not p.requires_grad for teacher in teachers for p in teacher.parameters())
    optimizer_params = {id(p) for group in t.state.optimizers[0].param_groups for p in group['params']}
    assert optimizer_params and not optimizer_params & teacher_params
    assert {id(p) for p in t.state.model.parameters()}.isdisjoint(teacher_params)
    student_tensors = {v.data_ptr() for v in t.state.model.state_dict().values()}
    assert student_tensors.isdisjoint({p.data_ptr() for teacher in teachers for p in teacher.parameters()})
    assert len(t.state.model.state_dict()) == 4  # fc1/fc2 weight/bias of the student only
    assert len(log) == 4 and all(training is False for _, training in log)  # eval mode during training


@pytest.mark.parametrize('max_duration, num_batches, start, end', [
    ('10ba', 10, '0.3dur', '0.6dur'),
    ('2ep', 5, '0.3dur', '0.6dur'),  # 'dur' over epochs is resolved per batch
    ('10ba', 10, '3ba', '6ba'),
    ('10ba', 10, '12sp', '24sp'),  # batch size 4
])
@pytest.mark.parametrize('pool_mode, per_step', [('random_1', 1), ('all', 4)])
def test_teacher_forwards_only_inside_the_window(max_duration, num_batches, start, end, pool_mode, per_step):
    log = []
    teachers = [Net(tag=i, log=log) for i in range(4)]  # plain modules: called on batch[0]
    kd = KnowledgeDistillation(teachers, pool_mode=pool_mode, start=start, end=end, seed=5)
    recorder = StepRecorder(log)
    logs = InMemoryLogger()
    trainer(student(), kd, max_duration, loader(num_batches), callbacks=[recorder], loggers=[logs]).fit()
    forwards = [len(recorder.steps[b]) for b in range(10)]
    assert forwards == [0, 0, 0, per_step, per_step, per_step, 0, 0, 0, 0]
    assert kd.teacher_forwards == 3 * per_step
    assert [v for _, v in logs.data['kd/teachers_per_step']] == forwards
    assert 'loss/train/kd' in logs.data


def test_one_draw_per_step_shared_by_microbatches():
    log = []
    kd = KnowledgeDistillation([Net(tag=i, log=log) for i in range(4)], pool_mode='random_1', seed=1)
    recorder = StepRecorder(log)
    trainer(student(), kd, '6ba', loader(6), callbacks=[recorder], device_train_microbatch_size=2).fit()
    tags = [[tag for tag, _ in recorder.steps[b]] for b in range(6)]
    assert all(len(t) == 2 and t[0] == t[1] for t in tags)  # 2 microbatches, the same teacher
    assert len({t[0] for t in tags}) > 1  # but a new draw at each step
    assert kd.teacher_forwards == 12


def test_add_distillation_loss_keeps_task_entries():
    kd = torch.tensor(2.0)
    out = add_distillation_loss({'total': torch.tensor(3.0), 'ce': torch.tensor(2.5), 'aux': torch.tensor(0.5)},
                                kd, 0.5)
    assert {k: v.item() for k, v in out.items()} == {'total': 4.0, 'ce': 2.5, 'aux': 0.5, 'kd': 2.0}
    out = add_distillation_loss({'a': torch.tensor([1.0, 3.0]), 'b': torch.tensor(1.0)}, kd, 2.0)
    assert out['total'].item() == 7.0 and out['kd'].item() == 2.0
    assert add_distillation_loss(torch.tensor(1.5), kd, 1.0)['ce'].item() == 1.5


class MLMData(Dataset):

    def __init__(self, n=8, length=12, vocab=100):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(5, vocab, (n, length), generator=g)
        self.labels = torch.full((n, length), -100)
        masked = torch.rand(n, length, generator=g) < 0.25
        masked[:, 0] = True
        self.labels[masked] = self.ids[masked]
        self.ids = self.ids.masked_fill(masked, 4)  # [MASK]

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {'input_ids': self.ids[i], 'attention_mask': torch.ones_like(self.ids[i]), 'labels': self.labels[i]}


def tiny_bert(seed):
    transformers = pytest.importorskip('transformers')
    from composer.models import HuggingFaceModel
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=32)
    return HuggingFaceModel(transformers.BertForMaskedLM(config), use_logits=True)


def test_masked_lm_distils_only_masked_positions():
    teacher, model = tiny_bert(0), tiny_bert(1)
    data = MLMData()
    batches = DataLoader(data, batch_size=4, shuffle=False)
    kd = KnowledgeDistillation([teacher], kd_loss='kl', temperature=2.0, kd_loss_weight=0.5)
    t = trainer(model, kd, '1ba', batches)
    t.fit()
    batch = next(iter(batches))
    assert 'labels' in t.state.batch  # the batch was not mutated
    student_logits = t.state.outputs.logits.detach().double().numpy()
    with torch.no_grad():
        teacher.eval()
        teacher_logits = teacher.model(input_ids=batch['input_ids'],
                                       attention_mask=batch['attention_mask']).logits.double().numpy()
    rows = (batch['labels'] != -100).numpy()
    assert 0 < rows.sum() < rows.size
    expected = np_kd_kl(student_logits[rows], teacher_logits[rows], 2.0)
    assert t.state.loss['kd'].item() == pytest.approx(expected, rel=1e-4)
    everywhere = np_kd_kl(student_logits.reshape(-1, 100), teacher_logits.reshape(-1, 100), 2.0)
    assert everywhere != pytest.approx(expected, rel=1e-2)  # the mask matters (tolerance above is 1e-4)
    assert t.state.loss['total'].item() == pytest.approx(0.5 * expected + t.state.loss['ce'].item(), rel=1e-4)


# --- resume and teacher loading -----------------------------------------------------------------------------------
def _counting_teachers(log):
    torch.manual_seed(2)
    return [Net(tag=i, log=log) for i in range(4)]


@pytest.fixture(scope='module')
def uninterrupted_run(tmp_path_factory):
    """8 batches, random_1 over 4 teachers, a checkpoint after every batch."""
    folder = tmp_path_factory.mktemp('kd_ckpt')
    log = []
    kd = KnowledgeDistillation(_counting_teachers(log), pool_mode='random_1', seed=7)
    recorder = StepRecorder(log)
    t = trainer(student(), kd, '8ba', loader(8), callbacks=[recorder], save_folder=str(folder),
                save_interval='1ba', save_overwrite=True)
    t.fit()
    sequence = [[tag for tag, _ in recorder.steps[b]] for b in range(8)]
    return folder, sequence, t


def test_resume_continues_the_teacher_sequence(uninterrupted_run):
    folder, sequence, _ = uninterrupted_run
    assert all(len(s) == 1 for s in sequence)
    assert sequence[4:] != sequence[:4]  # a sampler restarted from its seed would not pass
    log = []
    kd = KnowledgeDistillation(_counting_teachers(log), pool_mode='random_1', seed=7)
    recorder = StepRecorder(log)
    resumed = trainer(student(), kd, '8ba', loader(8), callbacks=[recorder],
                      load_path=str(folder / 'ep0-ba4-rank0.pt'))
    assert int(resumed.state.timestamp.batch) == 4
    resumed.fit()
    assert [[tag for tag, _ in recorder.steps[b]] for b in range(4, 8)] == sequence[4:]
    assert kd.teacher_forwards == 8  # 4 restored from the checkpoint + 4 after resuming


def test_load_teacher_weights_from_a_composer_checkpoint(uninterrupted_run, tmp_path):
    folder, _, t = uninterrupted_run
    path = folder / 'ep0-ba8-rank0.pt'
    trained = t.state.model.state_dict()
    # What load_teacher_weights works around: plain weights_only=True refuses a Composer checkpoint.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True, map_location='cpu')
    wrapped = load_teacher_weights(ComposerClassifier(Net(), num_classes=3), path)
    bare = load_teacher_weights(Net(), path)  # 'module.' prefix stripped
    for key, value in trained.items():
        assert torch.equal(wrapped.state_dict()[key], value)
        assert torch.equal(bare.state_dict()[key.removeprefix('module.')], value)
    # A plain state dict, loaded into the wrapper (prefix added).
    plain = tmp_path / 'plain.pt'
    torch.save(bare.state_dict(), plain)
    again = load_teacher_weights(ComposerClassifier(Net(), num_classes=3), plain)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in trained.items())


def test_load_teacher_weights_errors(uninterrupted_run, tmp_path):
    folder, _, _ = uninterrupted_run
    missing = tmp_path / 'nowhere.pt'
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_teacher_weights(Net(), missing)
    with pytest.raises(ValueError, match=r'shape mismatch in .*fc1\.weight'):
        load_teacher_weights(Net(hidden=32), folder / 'ep0-ba8-rank0.pt')
    with pytest.raises(ValueError, match=r"missing keys \['0\.bias', '0\.weight'"):
        load_teacher_weights(nn.Sequential(nn.Linear(8, 3)), folder / 'ep0-ba8-rank0.pt')


def test_readme_example_runs():
    blocks = re.findall(r'```python\n(.*?)```', README.read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(README), 'exec'), {'__name__': 'readme'})
