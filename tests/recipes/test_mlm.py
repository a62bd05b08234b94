"""Masked-LM pre-training: BERT's masking rule, token blocks, the in-memory text loader, the sparse MLM head, MLM
accuracy on masked positions only, and the one-line errors of a bad tokenizer, text column or sequence length."""
from __future__ import annotations

import json
import math

import pytest
import torch

pytest.importorskip('transformers')

from composer.metrics.nlp import MaskedAccuracy  # noqa: E402

from algorithms.distillation import KnowledgeDistillation  # noqa: E402
from recipes.models.architectures.bert import bert_config, bert_mlm  # noqa: E402
from recipes.core.builders import launch, prepare  # noqa: E402
from recipes.core.config import load_config  # noqa: E402
from recipes.core.errors import ConfigError  # noqa: E402
from recipes.data.text.mlm_masking import IGNORE_INDEX, MLMCollator, mask_tokens  # noqa: E402
from recipes.data.text.text_blocks import pack_blocks, read_json_lines, text_blocks  # noqa: E402
from recipes.data.text.text_data import InMemoryTokens, TokenBatches  # noqa: E402
from recipes.data.text.tokenizer import load_tokenizer  # noqa: E402
from tests.helpers.tiny_data import write_text_corpus, write_tokenizer  # noqa: E402

REPO_YAML = 'yamls/sotu/tiny_bert.yaml'


@pytest.fixture(scope='module')
def text_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('text')
    write_text_corpus(root / 'corpus', n_docs=6, words=80)
    write_tokenizer(root / 'tok')
    return root


# --- masking ---------------------------------------------------------------------------------------------------------
def test_mask_tokens_follows_the_80_10_10_rule():
    n, vocab, mask_id = 400_000, 1000, 4
    ids = torch.randint(5, vocab, (n,), generator=torch.Generator().manual_seed(1))
    special = torch.zeros(n, dtype=torch.bool)
    special[::10] = True  # every tenth position is a special token: never chosen
    masked, labels = mask_tokens(ids, mask_token_id=mask_id, vocab_size=vocab, special_mask=special,
                                 probability=0.15, generator=torch.Generator().manual_seed(0))
    chosen = labels != IGNORE_INDEX
    assert not chosen[special].any()
    assert torch.equal(labels[chosen], ids[chosen])  # the label is the original token
    assert torch.equal(masked[~chosen], ids[~chosen])  # positions not chosen are untouched
    m = int(chosen.sum())
    candidates = n - int(special.sum())

    def close(count: int, total: int, p: float) -> bool:  # within 5 standard errors of a binomial count
        return abs(count - p * total) < 5 * math.sqrt(total * p * (1 - p))

    assert close(m, candidates, 0.15)
    as_mask = int((masked[chosen] == mask_id).sum())
    unchanged = int((masked[chosen] == ids[chosen]).sum())
    random_other = m - as_mask - unchanged
    assert close(as_mask, m, 0.8)
    # unchanged: the 10% kept, plus the random draws that hit the original token (1/vocab of 10%)
    assert close(unchanged, m, 0.1 + 0.1 / vocab)
    assert close(random_other, m, 0.1 - 0.1 / vocab)
    assert masked.dtype == ids.dtype and masked.shape == ids.shape


def test_mask_tokens_is_reproducible_and_does_not_modify_its_input():
    ids = torch.arange(5, 205).view(4, 50)
    before = ids.clone()
    a = mask_tokens(ids, mask_token_id=4, vocab_size=300, generator=torch.Generator().manual_seed(3))
    b = mask_tokens(ids, mask_token_id=4, vocab_size=300, generator=torch.Generator().manual_seed(3))
    c = mask_tokens(ids, mask_token_id=4, vocab_size=300, generator=torch.Generator().manual_seed(4))
    assert torch.equal(ids, before)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_collator_masks_no_special_token_and_sets_attention(text_root):
    tok = load_tokenizer(str(text_root / 'tok'))
    ids = [[tok.cls_token_id, 10, 11, 12, 13, tok.sep_token_id, tok.pad_token_id, tok.pad_token_id]] * 64
    batch = MLMCollator(tok, probability=0.5, seed=0)([{'input_ids': x} for x in ids])
    specials = torch.tensor(ids) < 5  # ids 0..4 are [PAD] [UNK] [CLS] [SEP] [MASK] in the trained vocab
    assert set(tok.all_special_ids) == {0, 1, 2, 3, 4}
    assert (batch['labels'][specials] == IGNORE_INDEX).all()
    assert (batch['labels'][~specials] != IGNORE_INDEX).any()
    assert batch['attention_mask'].tolist()[0] == [1, 1, 1, 1, 1, 1, 0, 0]


# --- blocks ------------------------------------------------------------------------------------------------------------
def test_pack_blocks_by_hand():
    cls, sep = 2, 3
    blocks = pack_blocks([[10, 11, 12], [13, 14]], block_len=4, cls_id=cls, sep_id=sep)
    # stream: 10 11 12 [SEP] 13 14 -> bodies of 2: (10 11) (12 [SEP]) (13 14)
    assert blocks.tolist() == [[2, 10, 11, 3], [2, 12, 3, 3], [2, 13, 14, 3]]
    assert pack_blocks([[1]], 4, cls, sep).shape == (0, 4)  # not one full block: nothing


def test_text_blocks_hold_the_tokens_of_the_documents_in_order(text_root):
    tok = load_tokenizer(str(text_root / 'tok'))
    path = text_root / 'corpus' / 'train.jsonl'
    blocks = text_blocks(tok, [path], block_len=16)
    texts = read_json_lines([path])
    stream = []
    for t in texts:
        stream += ([tok.sep_token_id] if stream else []) + tok(t, add_special_tokens=False)['input_ids']
    assert blocks[:, 0].eq(tok.cls_token_id).all() and blocks[:, -1].eq(tok.sep_token_id).all()
    assert blocks[:, 1:-1].reshape(-1).tolist() == stream[:blocks.shape[0] * 14]
    assert len(stream) - blocks.shape[0] * 14 < 14  # only the incomplete tail is dropped


def test_missing_text_column_is_one_line(tmp_path):
    path = tmp_path / 'train.jsonl'
    path.write_text(json.dumps({'content': 'hello'}) + '\n')
    with pytest.raises(ConfigError, match=r"loader.text_column: .* no text column 'text' \(it has: content\)"):
        read_json_lines([path], 'text', 'loader')


# --- the in-memory loader ----------------------------------------------------------------------------------------------
def test_token_batches_masks_depend_on_seed_and_epoch_only(text_root):
    tok = load_tokenizer(str(text_root / 'tok'))
    blocks = text_blocks(tok, [text_root / 'corpus' / 'train.jsonl'], block_len=16)
    data = InMemoryTokens(blocks, tok)

    def epoch(shuffle: bool, e: int, seed: int = 0, world: int = 1, rank: int = 0) -> list[dict]:
        sampler = TokenBatches(data, 4, shuffle=shuffle, drop_last=False, seed=seed, world=world, rank=rank)
        sampler.set_epoch(e)
        return [data[k] for k in sampler]

    def same(a: list[dict], b: list[dict]) -> bool:
        return all(torch.equal(x['input_ids'], y['input_ids']) and torch.equal(x['labels'], y['labels'])
                   for x, y in zip(a, b))

    assert same(epoch(True, 1), epoch(True, 1))
    assert not same(epoch(True, 1), epoch(True, 2))
    assert not same(epoch(True, 1), epoch(True, 1, seed=5))
    assert same(epoch(False, 0), epoch(False, 3))  # an evaluation split is masked the same way every time
    first = epoch(False, 0)
    restored = torch.cat([torch.where(b['labels'] == IGNORE_INDEX, b['input_ids'], b['labels']) for b in first])
    changed = torch.cat([b['input_ids'] != b['labels'] for b in first]) & torch.cat(
        [b['labels'] != IGNORE_INDEX for b in first])
    assert torch.equal(restored[~changed], blocks[:len(restored)][~changed])  # in order, labels = the originals
    ranks = [torch.cat([b['labels'] for b in epoch(True, 0, world=2, rank=r)]) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1])


# --- the model -----------------------------------------------------------------------------------------------------------
def _tiny(sparse: bool, seed: int = 0):
    torch.manual_seed(seed)
    return bert_mlm(config='bert-tiny', vocab_size=60, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                    max_position_embeddings=16, sparse_head=sparse)


def _batch(seed: int = 0) -> dict:
    ids = torch.randint(5, 60, (3, 16), generator=torch.Generator().manual_seed(seed))
    masked, labels = mask_tokens(ids, mask_token_id=4, vocab_size=60, generator=torch.Generator().manual_seed(seed))
    return {'input_ids': masked, 'attention_mask': torch.ones_like(ids), 'labels': labels}


def test_sparse_head_gives_the_dense_loss_and_accuracy():
    sparse, dense = _tiny(True), _tiny(False)
    dense.load_state_dict(sparse.state_dict())
    for m in (sparse, dense):
        m.eval()
    batch = _batch()
    where = batch['labels'] != IGNORE_INDEX
    with torch.no_grad():
        s_out, d_out = sparse(batch), dense(batch)
    assert s_out.logits.shape == (int(where.sum()), 60)
    assert torch.allclose(s_out.logits, d_out.logits[where], atol=1e-5)
    assert sparse.loss(s_out, batch).item() == pytest.approx(dense.loss(d_out, batch).item(), rel=1e-5)
    # the loss by hand: mean cross-entropy over the masked positions only
    logp = torch.log_softmax(d_out.logits[where].double(), -1)
    by_hand = -logp[torch.arange(int(where.sum())), batch['labels'][where]].mean().item()
    assert sparse.loss(s_out, batch).item() == pytest.approx(by_hand, rel=1e-5)
    accs = []
    for m in (sparse, dense):
        metric = MaskedAccuracy(ignore_index=IGNORE_INDEX)
        b = {k: v.clone() for k, v in batch.items()}
        out = m.eval_forward(b)
        m.update_metric(b, out, metric)
        accs.append(metric.compute().item())
    pred = d_out.logits.argmax(-1)
    assert accs[0] == pytest.approx(accs[1]) == pytest.approx((pred[where] == batch['labels'][where]).double().mean().item())
    assert torch.equal(batch['labels'], _batch()['labels'])  # eval_forward did not modify the batch


def test_masked_accuracy_counts_masked_positions_only():
    metric = MaskedAccuracy(ignore_index=IGNORE_INDEX)
    logits = torch.zeros(1, 4, 3)
    logits[0, 0, 1] = logits[0, 1, 2] = logits[0, 2, 0] = logits[0, 3, 0] = 1.0  # predictions 1, 2, 0, 0
    labels = torch.tensor([[1, 0, IGNORE_INDEX, IGNORE_INDEX]])  # 1 of the 2 masked positions right
    metric.update(logits, labels)
    assert metric.compute().item() == pytest.approx(0.5)


def test_kd_on_the_sparse_head_equals_kd_on_dense_masked_positions():
    teacher, student = _tiny(True, seed=1), _tiny(True, seed=2)
    dense_t, dense_s = _tiny(False), _tiny(False)
    dense_t.load_state_dict(teacher.state_dict())
    dense_s.load_state_dict(student.state_dict())
    batch = _batch(1)
    losses = []
    for t, s in ((teacher, student), (dense_t, dense_s)):
        kd = KnowledgeDistillation([t], kd_loss='kl', temperature=2.0)
        s.eval()
        with torch.no_grad():
            out = s(batch)
        io = kd.pool.forward(batch)
        from algorithms.distillation.model_io import ModelIO
        losses.append(kd.compute(ModelIO(outputs=out), io, batch).item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_bert_config_by_name_and_fields():
    cfg = bert_config('bert-base')
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.vocab_size) == (768, 12, 12, 30522)
    assert bert_config('bert-tiny', hidden_size=64).hidden_size == 64
    with pytest.raises(ValueError, match='hidden_size: 100 is not a multiple of num_attention_heads'):
        bert_config('bert-base', hidden_size=100)
    with pytest.raises(ValueError, match='num_hidden_layers: expected a positive int'):
        bert_config('bert-base', num_hidden_layers=0)
    assert bert_mlm(config='bert-tiny', vocab_size=50, max_position_embeddings=16).model.config.vocab_size == 50


# --- the recipe ------------------------------------------------------------------------------------------------------------
def _cfg(text_root, tmp_path, **extra):
    overrides = {
        'run_dir': str(tmp_path / 'run'), 'save_folder': 'null', 'progress_bar': 'false', 'callbacks': '{}',
        'max_duration': '4ba', 'eval_interval': '2ba', 'global_train_batch_size': 4, 'global_eval_batch_size': 4,
        'model.tokenizer': str(text_root / 'tok'), 'model.max_position_embeddings': 16,
        'train_loader.path': str(text_root / 'corpus'), 'train_loader.tokenizer': str(text_root / 'tok'),
        'train_loader.max_seq_len': 16,
        'eval_loader.path': str(text_root / 'corpus'), 'eval_loader.tokenizer': str(text_root / 'tok'),
        'eval_loader.max_seq_len': 16, 'eval_loader.subset': 8, **extra,
    }
    return load_config(REPO_YAML, [f'{k}={v}' for k, v in overrides.items()])


def test_recipe_trains_and_evaluates_mlm_accuracy(text_root, tmp_path):
    trainer = launch(prepare(_cfg(text_root, tmp_path)))
    trainer.fit()
    trainer.close()
    records = [json.loads(x) for x in (tmp_path / 'run' / 'record.jsonl').read_text().splitlines()]
    assert [r['step'] for r in records] == [2, 4]
    acc = records[-1]['metrics']['eval/MaskedAccuracy']
    assert 0.0 <= acc <= 1.0 and math.isfinite(records[-1]['metrics']['eval/LanguageCrossEntropy'])


@pytest.mark.parametrize('extra, message', [
    ({'train_loader.tokenizer': '/no/such/tokenizer'}, 'train_loader.tokenizer: tokenizer path not found'),
    ({'model.tokenizer': './missing-tok'}, '^model.tokenizer: tokenizer path not found'),
    ({'train_loader.text_column': 'body'}, "train_loader.text_column: .* no text column 'body'"),
    ({'train_loader.max_seq_len': 32}, "train_loader.max_seq_len: 32 is beyond the model's limit of 16"),
    ({'train_loader.mlm_probability': 1.5}, 'train_loader.mlm_probability: expected a probability'),
])
def test_bad_text_input_is_one_line_before_anything_starts(text_root, tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message) as e:
        prepare(_cfg(text_root, tmp_path, **extra))
    assert '\n' not in str(e.value)
    assert not (tmp_path / 'run').exists()


def test_a_batch_without_masked_positions_has_zero_loss_not_nan():
    model = _tiny(True)
    batch = _batch()
    batch['labels'] = torch.full_like(batch['labels'], IGNORE_INDEX)
    loss = model.loss(model(batch), batch)
    assert loss.item() == 0.0
    loss.backward()  # and it backpropagates (zero gradients)
