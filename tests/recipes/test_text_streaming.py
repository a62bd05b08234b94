"""JSON lines -> MDS shards (``python -m recipes.text_to_mds``) -> ``text_mds`` batches, and the ``c4`` stream read
through ``datasets``' local ``json`` builder: the tokens are those of tokenising the text directly, packed as
``pack_blocks`` packs them, and masked by BERT's rule with the collator's seeded generator."""
from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from recipes.data.text import text_streaming
from recipes.data.registry import build_dataloader, check_data
from recipes.core.errors import ConfigError
from recipes.data.text.mlm_masking import IGNORE_INDEX, mask_tokens, special_positions
from recipes.data.text.text_blocks import pack_blocks, tokenize_documents
from recipes.data.text.text_streaming import BlockPacker, mask_generator, shard_block_len
from recipes.text_to_mds import CONVERSION_FILE, block_dtype, convert, main
from recipes.data.text.tokenizer import load_tokenizer

SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']  # ids 0..4
WORDS = ['the', 'cat', 'sat', 'on', 'mat', 'a', 'dog', 'ran', 'far', 'away', 'and', 'slept']  # ids 5..16
PAD, CLS, SEP, MASK = 0, 2, 3, 4
HAND_DOCS = ['The cat sat', 'on the mat', 'a dog']  # ids [5, 6, 7], [8, 5, 9], [10, 11]
# max_seq_len 6 (4 text tokens a block): the stream 5 6 7 SEP 8 5 9 SEP 10 11 gives two blocks; 10 11 is the tail
HAND_BLOCKS = [[CLS, 5, 6, 7, SEP, SEP], [CLS, 8, 5, 9, SEP, SEP]]


@pytest.fixture(scope='module')
def tokenizer_dir(tmp_path_factory) -> str:
    """A BERT WordPiece tokenizer (lower-casing normaliser, BERT pre-tokenizer) over SPECIALS + WORDS."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    vocab = {token: i for i, token in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token='[UNK]'))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    folder = tmp_path_factory.mktemp('tok')
    tok.save(str(folder / 'tokenizer.json'))
    return str(folder)


def random_docs(n: int, seed: int) -> list[str]:
    """``n`` documents of 0-30 words (some empty) drawn from WORDS."""
    rng = random.Random(seed)
    return [' '.join(rng.choice(WORDS) for _ in range(rng.choice([0, 1, 3, 7, 12, 30]))) for _ in range(n)]


def write_jsonl(path: Path, texts: list[str], column: str = 'text') -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == '.gz' else open
    with opener(path, 'wt', encoding='utf-8') as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({column: text, 'url': f'https://example.com/{i}'}) + '\n')
    return path


def unmasked(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The blocks before masking: labels hold the original token wherever a position was chosen."""
    return torch.where(batch['labels'] != IGNORE_INDEX, batch['labels'], batch['input_ids'])


def test_block_packer_streams_what_pack_blocks_packs() -> None:
    assert [b.tolist() for b in BlockPacker(6, CLS, SEP).feed([[5, 6, 7], [8, 5, 9], [10, 11]])] == HAND_BLOCKS
    rng = random.Random(0)
    docs = [[rng.randrange(5, 17) for _ in range(rng.choice([0, 0, 1, 2, 5, 40]))] for _ in range(200)]
    docs[:3] = [[], [], [7]]  # leading empty documents add no separator, as in pack_blocks
    for block_len in (3, 6, 17):
        expected = pack_blocks(docs, block_len, CLS, SEP)
        packer, got, i = BlockPacker(block_len, CLS, SEP, dtype=np.uint16), [], 0
        while i < len(docs):  # fed in chunks of random sizes
            step = rng.randrange(1, 9)
            got.extend(packer.feed(docs[i:i + step]))
            i += step
        assert all(b.dtype == np.uint16 for b in got)
        assert torch.equal(torch.as_tensor(np.stack(got).astype(np.int64)), expected)
        total = sum(map(len, docs)) + len(docs) - 3  # a separator before every document after [7]
        assert packer.pending == total - len(got) * (block_len - 2)


def test_hand_tokenised_blocks_through_mds(tokenizer_dir: str, tmp_path: Path) -> None:
    tok = load_tokenizer(tokenizer_dir)
    assert tokenize_documents(tok, HAND_DOCS) == [[5, 6, 7], [8, 5, 9], [10, 11]]
    write_jsonl(tmp_path / 'json' / 'train.jsonl', HAND_DOCS)
    record = convert([str(tmp_path / 'json' / 'train.jsonl')], tmp_path / 'mds' / 'train', tokenizer_dir,
                     max_seq_len=6, progress=False)
    assert {k: record[k] for k in ('documents', 'blocks', 'tokens', 'dropped_tokens', 'vocab_size', 'dtype')} == {
        'documents': 3, 'blocks': 2, 'tokens': 12, 'dropped_tokens': 2, 'vocab_size': 17, 'dtype': 'uint16'}
    assert shard_block_len(tmp_path / 'mds' / 'train') == (6, 'uint16')
    assert not (tmp_path / 'mds' / 'train.partial').exists()
    cfg = {'dataset': 'text_mds', 'path': str(tmp_path / 'mds'), 'split': 'train', 'tokenizer': tokenizer_dir,
           'max_seq_len': 6, 'shuffle': False, 'drop_last': False}
    check_data(cfg, 'train_loader')
    batches = list(build_dataloader(cfg, batch_size=2))
    assert len(batches) == 1 and unmasked(batches[0]).tolist() == HAND_BLOCKS
    assert batches[0]['attention_mask'].tolist() == [[1] * 6] * 2


def test_mds_batches_equal_direct_tokenisation_and_are_masked(tokenizer_dir: str, tmp_path: Path, monkeypatch) -> None:
    docs = random_docs(120, seed=1)
    # two files, the second gzipped, named by a glob: read in sorted order
    write_jsonl(tmp_path / 'json' / 'part-0.jsonl', docs[:70])
    write_jsonl(tmp_path / 'json' / 'part-1.jsonl.gz', docs[70:])
    assert main(['--input', str(tmp_path / 'json' / 'part-*'), '--out', str(tmp_path / 'mds' / 'train'),
                 '--tokenizer', tokenizer_dir, '--max-seq-len', '16', '--compression', 'zstd', '--size-limit',
                 '2000', '--no-progress']) == 0
    tok = load_tokenizer(tokenizer_dir)
    expected = pack_blocks(tokenize_documents(tok, docs), 16, CLS, SEP)
    assert len(list((tmp_path / 'mds' / 'train').glob('shard.*.mds.zstd'))) > 1  # several compressed shards
    cfg = {'dataset': 'text_mds', 'path': str(tmp_path / 'mds'), 'split': 'train', 'tokenizer': tokenizer_dir,
           'max_seq_len': 16, 'shuffle': False, 'drop_last': False}
    batches = list(build_dataloader(cfg, batch_size=8))
    got = torch.cat([unmasked(b) for b in batches])
    assert got.shape == expected.shape and torch.equal(got, expected)
    # the masks are BERT's rule drawn from the generator of (seed 0, epoch 0, rank 0): replayed exactly
    generator = mask_generator(0, 0, 0)
    for batch, start in zip(batches, range(0, len(expected), 8)):
        original = expected[start:start + 8]
        masked, labels = mask_tokens(original, mask_token_id=MASK, vocab_size=17, probability=0.15,
                                     special_mask=special_positions(original, [0, 1, 2, 3, 4]), generator=generator)
        assert torch.equal(batch['input_ids'], masked) and torch.equal(batch['labels'], labels)
    again = list(build_dataloader(cfg, batch_size=8))  # not shuffled (an evaluation split): the same masks each time
    assert all(torch.equal(a['labels'], b['labels']) for a, b in zip(again, batches))
    labels = torch.cat([b['labels'] for b in batches])
    chosen = labels != IGNORE_INDEX
    assert not chosen[:, [0, -1]].any()  # [CLS] and [SEP] are never chosen
    assert 0.10 < chosen.float().mean() < 0.20  # about 15% of the positions
    inputs = torch.cat([b['input_ids'] for b in batches])
    assert 0.6 < (inputs[chosen] == MASK).float().mean() < 0.95  # about 80% of the chosen become [MASK]
    # shuffled: the same blocks in another order; subset caps the epoch
    shuffled = torch.cat([unmasked(b) for b in build_dataloader({**cfg, 'shuffle': True}, batch_size=8)])
    assert not torch.equal(shuffled, expected)
    assert sorted(map(tuple, shuffled.tolist())) == sorted(map(tuple, expected.tolist()))
    # subset, not shuffled (an evaluation): the first 10 blocks every time, dealt to the ranks in turn
    capped = torch.cat([unmasked(b) for b in build_dataloader({**cfg, 'subset': 10}, batch_size=4)])
    assert torch.equal(capped, expected[:10])
    monkeypatch.setattr(text_streaming, '_rank_world', lambda: (1, 2))
    capped = torch.cat([unmasked(b) for b in build_dataloader({**cfg, 'subset': 10}, batch_size=4)])
    assert torch.equal(capped, expected[1:10:2])
    monkeypatch.undo()
    # subset, shuffled: 10 blocks an epoch, drawn from the split
    drawn = torch.cat([unmasked(b) for b in build_dataloader({**cfg, 'subset': 10, 'shuffle': True}, batch_size=4)])
    assert len(drawn) == 10 and set(map(tuple, drawn.tolist())) <= set(map(tuple, expected.tolist()))


def test_conversion_is_idempotent_and_refuses_to_overwrite(tokenizer_dir: str, tmp_path: Path, capsys) -> None:
    source = write_jsonl(tmp_path / 'train.jsonl', random_docs(20, seed=2))
    out = tmp_path / 'mds' / 'train'
    args = ['--input', str(source), '--out', str(out), '--tokenizer', tokenizer_dir, '--no-progress']
    assert main(args) == 0
    stamp = (out / 'index.json').stat().st_mtime_ns
    assert main(args) == 0 and (out / 'index.json').stat().st_mtime_ns == stamp  # nothing done the second time
    assert main(args[:-1] + ['--max-seq-len', '32', '--no-progress']) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('error: --out: ') and 'max_seq_len differ' in err
    assert main(args[:-1] + ['--max-seq-len', '32', '--overwrite', '--no-progress']) == 0
    assert shard_block_len(out) == (32, 'uint16')
    assert json.loads((out / CONVERSION_FILE).read_text())['max_seq_len'] == 32


@pytest.mark.parametrize('case, message', [
    ('no input', "error: --input: no file matches '{tmp}/missing-*.jsonl'"),
    ('bad tokenizer', 'error: --tokenizer: tokenizer path not found: {tmp}/no-tokenizer'),
    ('missing column', "error: --text-column: {tmp}/body.jsonl line 1 has no text column 'text' (it has: body, url)"),
])
def test_conversion_errors_are_one_line(case: str, message: str, tokenizer_dir: str, tmp_path: Path,
                                        capsys) -> None:
    write_jsonl(tmp_path / 'body.jsonl', ['the cat'], column='body')
    inputs = {'no input': str(tmp_path / 'missing-*.jsonl')}.get(case, str(tmp_path / 'body.jsonl'))
    tokenizer = str(tmp_path / 'no-tokenizer') if case == 'bad tokenizer' else tokenizer_dir
    assert main(['--input', inputs, '--out', str(tmp_path / 'out'), '--tokenizer', tokenizer, '--no-progress']) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith(message.format(tmp=tmp_path))
    assert not (tmp_path / 'out').exists() and not (tmp_path / 'out.partial').exists()


def test_text_mds_refuses_shards_that_do_not_fit(tokenizer_dir: str, tmp_path: Path) -> None:
    convert([str(write_jsonl(tmp_path / 'v.jsonl', random_docs(10, seed=3)))], tmp_path / 'mds' / 'validation',
            tokenizer_dir, max_seq_len=8, progress=False)
    cfg = {'dataset': 'text_mds', 'path': str(tmp_path / 'mds'), 'split': 'validation', 'tokenizer': tokenizer_dir}
    with pytest.raises(ConfigError, match=r'^eval_loader\.max_seq_len: 128 does not fit the shards in .*validation, '
                                          r'whose blocks have 8 tokens; set eval_loader\.max_seq_len: 8 or convert'):
        check_data(cfg, 'eval_loader')
    record = tmp_path / 'mds' / 'validation' / CONVERSION_FILE
    record.write_text(json.dumps({**json.loads(record.read_text()), 'vocab_size': 30522, 'tokenizer': 'bert'}))
    with pytest.raises(ConfigError, match=r"^eval_loader\.tokenizer: .* has 17 tokens, but the shards in .* were "
                                          r"made with 'bert' \(30522 tokens\)"):
        check_data({**cfg, 'max_seq_len': 8}, 'eval_loader')
    with pytest.raises(ConfigError, match=r'^eval_loader\.path: .* lacks text_mds data: expected .*test/index\.json '
                                          r'\(convert JSON lines with `python -m recipes\.text_to_mds'):
        check_data({**cfg, 'split': 'test'}, 'eval_loader')


def test_block_dtype() -> None:
    assert [block_dtype(n) for n in (17, 30522, 65536, 65537, 250_000)] == ['uint16'] * 3 + ['int32'] * 2


# --------------------------------------------------------------------------------------------------------- c4
def c4_cfg(tmp_path: Path, tokenizer_dir: str, **extra) -> dict:
    return {'dataset': 'c4', 'split': 'validation', 'tokenizer': tokenizer_dir, 'hf_path': 'json', 'hf_name': None,
            'data_files': str(tmp_path / 'c4' / '{split}.jsonl'), 'max_seq_len': 12, 'shuffle': False, 'subset': 1000,
            **extra}


def test_c4_stream_from_local_json_lines(tokenizer_dir: str, tmp_path: Path, monkeypatch) -> None:
    docs = random_docs(40, seed=4)
    write_jsonl(tmp_path / 'c4' / 'validation.jsonl', docs)
    tok = load_tokenizer(tokenizer_dir)
    expected = pack_blocks(tokenize_documents(tok, docs), 12, CLS, SEP)
    cfg = c4_cfg(tmp_path, tokenizer_dir)
    check_data(cfg, 'eval_loader')
    batches = list(build_dataloader(cfg, batch_size=4))
    assert torch.equal(torch.cat([unmasked(b) for b in batches]), expected)
    assert (torch.cat([b['labels'] for b in batches]) != IGNORE_INDEX).any()
    capped = list(build_dataloader({**cfg, 'subset': 6}, batch_size=4))  # 1000 above: more than the 15 blocks
    assert [len(b['input_ids']) for b in capped] == [4, 2]
    # two files read by two worker processes: each worker packs its own file, and they share the cap of 6 blocks
    write_jsonl(tmp_path / 'two' / 'a.jsonl', docs[:20])
    write_jsonl(tmp_path / 'two' / 'b.jsonl', docs[20:])
    two = {**cfg, 'data_files': [str(tmp_path / 'two' / '*.jsonl')], 'subset': 6, 'num_workers': 2}
    got = torch.cat([unmasked(b) for b in build_dataloader(two, batch_size=2)])
    per_file = [pack_blocks(tokenize_documents(tok, part), 12, CLS, SEP)[:3] for part in (docs[:20], docs[20:])]
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, torch.cat(per_file).tolist()))
    # two ranks over one file: each keeps every other document (datasets' split_dataset_by_node) and packs its own
    for rank in (0, 1):
        monkeypatch.setattr(text_streaming, '_rank_world', lambda rank=rank: (rank, 2))
        got = torch.cat([unmasked(b) for b in build_dataloader(cfg, batch_size=4)])
        assert torch.equal(got, pack_blocks(tokenize_documents(tok, docs[rank::2]), 12, CLS, SEP))


def test_c4_shuffles_documents_per_epoch(tokenizer_dir: str, tmp_path: Path) -> None:
    docs = [f'{w} ' * 10 for w in WORDS]  # each document one word ten times: a block shows which documents it holds
    write_jsonl(tmp_path / 'c4' / 'train.jsonl', docs)
    cfg = c4_cfg(tmp_path, tokenizer_dir, split='train', shuffle=True, shuffle_buffer=100, drop_last=False)
    loader = build_dataloader(cfg, batch_size=100, key='train_loader')
    epochs = [unmasked(next(iter(loader))) for _ in range(2)]
    orders = [[int(w) for w in dict.fromkeys(e[:, 1:-1].flatten().tolist()) if w != SEP] for e in epochs]
    assert sorted(orders[0]) == sorted(orders[1]) == list(range(5, 17))  # every document, once
    assert orders[0] != orders[1] and list(range(5, 17)) not in orders  # in another order each epoch


def test_c4_errors(tokenizer_dir: str, tmp_path: Path, monkeypatch) -> None:
    import datasets

    write_jsonl(tmp_path / 'c4' / 'validation.jsonl', ['the cat'], column='body')
    with pytest.raises(ConfigError, match=r"^loader\.text_column: document 1 of the stream has no text column "
                                          r"'text' \(it has: body, url\)"):
        list(build_dataloader(c4_cfg(tmp_path, tokenizer_dir), batch_size=2))  # known only once streaming
    with pytest.raises(ConfigError, match=r"^eval_loader\.data_files: no file matches '.*/nothing-\*\.jsonl' "
                                          r"\(split 'validation'\)"):
        check_data(c4_cfg(tmp_path, tokenizer_dir, data_files=str(tmp_path / 'nothing-*.jsonl')), 'eval_loader')
    with pytest.raises(ConfigError, match=r"^eval_loader\.data_files: no files for split 'validation' \(it has: "
                                          r"train\)"):
        check_data(c4_cfg(tmp_path, tokenizer_dir, data_files={'train': 'x.jsonl'}), 'eval_loader')
    with pytest.raises(ConfigError, match=r"^eval_loader\.shuffle_buffer: expected an integer >= 1, got 0"):
        check_data(c4_cfg(tmp_path, tokenizer_dir, shuffle_buffer=0), 'eval_loader')
    with pytest.raises(ConfigError, match=r"^eval_loader\.tokenizer: tokenizer path not found: .*/nowhere"):
        check_data(c4_cfg(tmp_path, tokenizer_dir, tokenizer=str(tmp_path / 'nowhere')), 'eval_loader')

    def offline(*args, **kwargs):  # what datasets raises without a network: a many-line message
        raise ConnectionError("Couldn't reach 'allenai/c4' on the Hub (LocalEntryNotFoundError)\nsecond line")

    monkeypatch.setattr(datasets, 'load_dataset', offline)
    with pytest.raises(ConfigError, match=r"^loader\.hf_path: cannot stream 'allenai/c4' \(en, split 'validation'\): "
                                          r"Couldn't reach 'allenai/c4' on the Hub \(LocalEntryNotFoundError\)$"):
        build_dataloader(c4_cfg(tmp_path, tokenizer_dir, hf_path='allenai/c4', hf_name='en', data_files=None),
                         batch_size=2)
    with pytest.raises(ConfigError, match=r"^eval_loader\.subset: a streamed evaluation needs a size"):
        check_data(c4_cfg(tmp_path, tokenizer_dir, subset=None), 'eval_loader')
    with pytest.raises(ConfigError, match=r"^eval_loader\.split: unknown split 'test' for 'c4'"):
        check_data(c4_cfg(tmp_path, tokenizer_dir, split='test'), 'eval_loader')


# ------------------------------------------------------------------------------------------------ paper recipe
@pytest.mark.parametrize('dataset', ['c4', 'text_mds'])
def test_paper_recipe_trains_on_either_stream(dataset: str, tokenizer_dir: str, tmp_path: Path) -> None:
    """yamls/c4/bert_base_a1.yaml with bert-tiny and tiny data: C4 as the recipe states it (through the local json
    builder), and MDS shards by the two overrides its header gives."""
    from recipes.core.builders import launch, prepare
    from recipes.core.config import load_config

    for split, seed in (('train', 5), ('validation', 6)):
        source = write_jsonl(tmp_path / 'c4' / f'{split}.jsonl', random_docs(40, seed=seed))
        convert([str(source)], tmp_path / 'mds' / split, tokenizer_dir, max_seq_len=16, progress=False)
    loaders = {'c4': {'hf_path': 'json', 'hf_name': 'null', 'data_files': str(tmp_path / 'c4' / '{split}.jsonl')},
               'text_mds': {'dataset': 'text_mds', 'path': str(tmp_path / 'mds')}}[dataset]
    overrides = ['model.config=bert-tiny', f'model.tokenizer={tokenizer_dir}', f'run_dir={tmp_path / "run"}',
                 'save_folder=null', 'autoresume=false', 'precision=fp32', 'device_train_microbatch_size=null',
                 'global_train_batch_size=4', 'global_eval_batch_size=4', 'max_duration=2ba', 'eval_interval=2ba',
                 'progress_bar=false', 'callbacks={}']
    for key in ('train_loader', 'eval_loader'):
        overrides += [f'{key}.tokenizer={tokenizer_dir}', f'{key}.max_seq_len=16', f'{key}.num_workers=0',
                      *(f'{key}.{k}={v}' for k, v in loaders.items())]  # the train stream has no length
    cfg = load_config(Path(__file__).resolve().parents[2] / 'yamls' / 'c4' / 'bert_base_a1.yaml', overrides)
    assert cfg['train_loader']['dataset'] == dataset and cfg['max_duration'] == '2ba'
    trainer = launch(prepare(cfg))
    trainer.fit()
    trainer.close()
    assert int(trainer.state.timestamp.batch) == 2 and torch.isfinite(trainer.state.loss).all()
    record = json.loads((tmp_path / 'run' / 'record.jsonl').read_text().splitlines()[-1])
    assert 0.0 <= record['metrics']['eval/MaskedAccuracy'] <= 1.0
