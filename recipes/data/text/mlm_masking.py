"""BERT's masking rule for masked-language-model pre-training (Devlin et al., 2019, section 3.1).

Each position that is not a special token (``[CLS]``, ``[SEP]``, ``[PAD]``) is chosen with probability ``p`` (0.15);
a chosen position's label is its original token and it is replaced by ``[MASK]`` with probability 0.8, by a token
drawn uniformly from the vocabulary with probability 0.1, and left unchanged with probability 0.1. Every other
position's label is ``-100`` (ignored by the loss and by :class:`composer.metrics.MaskedAccuracy`). This is the
rule of Hugging Face's ``DataCollatorForLanguageModeling``; here every draw comes from a generator passed in, so the
masks are reproducible and do not touch the global random state.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

import torch

__all__ = ['IGNORE_INDEX', 'mask_tokens', 'MLMCollator']

IGNORE_INDEX = -100


def mask_tokens(input_ids: torch.Tensor, *, mask_token_id: int, vocab_size: int,
                special_mask: Optional[torch.Tensor] = None, probability: float = 0.15,
                generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(masked_ids, labels)`` for integer ``input_ids`` of any shape (not modified).

    Args:
        input_ids: token ids.
        mask_token_id: the id of ``[MASK]``.
        vocab_size: random replacements are drawn from ``[0, vocab_size)``.
        special_mask: True where a position must never be chosen (special tokens, padding); same shape.
        probability: the chance that a position is chosen.
        generator: a CPU generator for every draw (the draws are made on the CPU and moved to ``input_ids``'s device).
    """
    if not 0.0 < probability < 1.0:
        raise ValueError(f'mlm probability must be in (0, 1), got {probability!r}')
    shape, device = input_ids.shape, input_ids.device
    draws = torch.rand((3, *shape), generator=generator).to(device)
    replacements = torch.randint(0, vocab_size, shape, generator=generator).to(device)
    chosen = draws[0] < probability
    if special_mask is not None:
        chosen &= ~special_mask.to(device=device, dtype=torch.bool)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    to_mask = chosen & (draws[1] < 0.8)
    to_random = chosen & ~to_mask & (draws[2] < 0.5)  # half of the remaining 20%
    masked = torch.where(to_mask, torch.full_like(input_ids, mask_token_id), input_ids)
    masked = torch.where(to_random, replacements.to(input_ids.dtype), masked)
    return masked, labels


def special_positions(input_ids: torch.Tensor, special_ids: Sequence[int]) -> torch.Tensor:
    """True where ``input_ids`` holds one of ``special_ids``."""
    return torch.isin(input_ids, torch.as_tensor(list(special_ids), device=input_ids.device))


class MLMCollator:
    """A ``collate_fn`` for examples ``{'input_ids': ints}`` of equal length: stacks them and masks them.

    Returns ``{'input_ids', 'attention_mask', 'labels'}`` (``attention_mask`` is 0 on ``[PAD]``). The draws come from
    the collator's own generator seeded by ``seed``; in worker processes each worker holds its own copy, so the masks
    differ between workers only through the examples they receive (seed each loader differently if that matters).

    Args:
        tokenizer: a BERT-style tokenizer (its ``mask_token_id``, ``pad_token_id``, ``all_special_ids`` and length).
        probability: the chance that a position is chosen.
        seed: the generator's seed.
    """

    def __init__(self, tokenizer: Any, probability: float = 0.15, seed: int = 0) -> None:
        self.mask_token_id, self.pad_token_id = tokenizer.mask_token_id, tokenizer.pad_token_id
        self.special_ids = sorted(set(tokenizer.all_special_ids))
        self.vocab_size = len(tokenizer)
        self.probability = probability
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        ids = torch.stack([torch.as_tensor(e['input_ids'], dtype=torch.long) for e in examples])
        masked, labels = mask_tokens(ids, mask_token_id=self.mask_token_id, vocab_size=self.vocab_size,
                                     special_mask=special_positions(ids, self.special_ids),
                                     probability=self.probability, generator=self.generator)
        return {'input_ids': masked, 'attention_mask': (ids != self.pad_token_id).long(), 'labels': labels}
