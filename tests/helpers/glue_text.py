"""Tiny GLUE-style text for the tests: a 20-word BERT WordPiece tokenizer whose ids the tests spell out by hand,
GLUE JSON lines as ``source: local`` reads them, and a real Composer checkpoint of a tiny ``bert_mlm`` run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

WORDS = ['the', 'movie', 'was', 'good', 'bad', 'a', 'film', 'is', 'great', 'awful', 'plot', 'and', 'not', 'very',
         'fun', 'dull', 'it', 'story', 'of', 'love']
SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
ID = {t: i for i, t in enumerate(SPECIALS + WORDS)}  # [PAD] 0 [UNK] 1 [CLS] 2 [SEP] 3 [MASK] 4 the 5 movie 6 ...
PAD, UNK, CLS, SEP = 0, 1, 2, 3


def write_tiny_tokenizer(folder: Path, post_processor: bool = True) -> str:
    """A BERT-style WordPiece ``tokenizer.json`` (lower-casing, ``[CLS] a [SEP] b [SEP]`` with token types)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.WordPiece(dict(ID), unk_token='[UNK]'))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    if post_processor:
        tok.post_processor = processors.BertProcessing(('[SEP]', SEP), ('[CLS]', CLS))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / 'tokenizer.json'
    tok.save(str(path))
    return str(path)


def write_glue(root: Path, task: str, split: str, rows: list[dict[str, Any]]) -> Path:
    """``<root>/<task>/<split>.jsonl`` with ``rows`` (GLUE's column names), as ``source: local`` reads it."""
    path = root / task / f'{split}.jsonl'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(''.join(json.dumps({**row, 'idx': i}) + '\n' for i, row in enumerate(rows)))
    return path


#: A tiny ``bert_mlm`` / ``bert_classifier`` (with ``config='bert-tiny'``) on the tiny tokenizer.
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=32)


def write_mlm_checkpoint(folder: Path, tok: str) -> Path:
    """``<folder>/mlm.pt``: a checkpoint written by Composer's Trainer after one step of a tiny ``bert_mlm`` (the
    lead's model: hidden 32, 2 layers, 32 positions, the tiny tokenizer's 25 tokens)."""
    from composer import Trainer
    from torch.utils.data import DataLoader

    from recipes.core.checkpoint_safety import use_weights_only_checkpoint_loading
    from recipes.data.text.mlm_masking import MLMCollator
    from recipes.data.text.tokenizer import load_tokenizer
    from recipes.models.registry import build_model

    torch.manual_seed(0)
    model = build_model('bert_mlm', config='bert-tiny', tokenizer=tok, **TINY)
    examples = [{'input_ids': [2, 5 + i, 6 + i, 7 + i, 8, 3]} for i in range(8)]
    loader = DataLoader(examples, batch_size=4, collate_fn=MLMCollator(load_tokenizer(tok), seed=0))
    use_weights_only_checkpoint_loading()
    trainer = Trainer(model=model, train_dataloader=loader, max_duration='1ba', save_folder=str(folder),
                      save_filename='mlm.pt', save_interval='1ba', progress_bar=False, device='cpu')
    trainer.fit()
    trainer.close()
    return folder / 'mlm.pt'
