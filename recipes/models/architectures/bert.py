"""BERT for masked-language-model pre-training, as a Composer model (``model.name: bert_mlm``).

A Hugging Face ``BertForMaskedLM``, freshly initialised from a config given by name or by its fields, wrapped in
Composer's ``HuggingFaceModel`` with ``LanguageCrossEntropy`` and ``MaskedAccuracy`` (masked positions only: labels
of -100 are ignored) as metrics, logged as ``metrics/eval/MaskedAccuracy`` and ``metrics/eval/LanguageCrossEntropy``.

``config`` is a size of :data:`BERT_CONFIGS` (``bert-base`` is the paper's model; ``bert-tiny`` .. ``bert-medium`` are
the compact sizes of Turc et al., 2019) or anything ``transformers.AutoConfig.from_pretrained`` reads (a hub name
such as ``bert-large-uncased`` where the hub is reachable, or a folder with a ``config.json``). Fields given next to
it override the config's; ``tokenizer`` sets ``vocab_size`` (and ``pad_token_id``) from a tokenizer, so the
embedding table always fits the data.

``sparse_head=True`` (the default) runs the prediction head on the masked positions only (``labels != -100``, about
15% of them), as MosaicML's BERT recipes do: the loss, the metrics and the distillation term are the same numbers as
with the head on every position (tested), for a fraction of the head's cost, which dominates small BERTs (the
``vocab x hidden`` projection). The logits are then ``[masked positions, vocab]``; ``sparse_head=False`` gives
Hugging Face's ``[N, L, vocab]``.
"""
from __future__ import annotations

from typing import Any, Optional

__all__ = ['BERT_CONFIGS', 'bert_config', 'bert_mlm', 'sparse_mlm_class']

_BASE = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
             max_position_embeddings=512, type_vocab_size=2, hidden_act='gelu', hidden_dropout_prob=0.1,
             attention_probs_dropout_prob=0.1)
#: Named sizes: layers x hidden (heads = hidden / 64, feed-forward = 4 x hidden), bert-base-uncased's vocabulary.
BERT_CONFIGS: dict[str, dict[str, Any]] = {
    'bert-base': _BASE,
    'bert-large': {**_BASE, 'hidden_size': 1024, 'num_hidden_layers': 24, 'num_attention_heads': 16,
                   'intermediate_size': 4096},
    'bert-medium': {**_BASE, 'hidden_size': 512, 'num_hidden_layers': 8, 'num_attention_heads': 8,
                    'intermediate_size': 2048},
    'bert-small': {**_BASE, 'hidden_size': 512, 'num_hidden_layers': 4, 'num_attention_heads': 8,
                   'intermediate_size': 2048},
    'bert-mini': {**_BASE, 'hidden_size': 256, 'num_hidden_layers': 4, 'num_attention_heads': 4,
                  'intermediate_size': 1024},
    'bert-tiny': {**_BASE, 'hidden_size': 128, 'num_hidden_layers': 2, 'num_attention_heads': 2,
                  'intermediate_size': 512},
}
_INT_FIELDS = ('vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size',
               'max_position_embeddings')
_FLOAT_FIELDS = ('hidden_dropout_prob', 'attention_probs_dropout_prob')


def bert_config(config: str = 'bert-base', tokenizer: Optional[str] = None, **fields: Any) -> Any:
    """A ``transformers.BertConfig``: the named config (see the module docstring) with ``fields`` overriding it.

    Raises ValueError (one line, naming the field) for an unknown config, a field of the wrong type, or a hidden size
    the number of heads does not divide.
    """
    from transformers import AutoConfig, BertConfig

    if config in BERT_CONFIGS:
        values = dict(BERT_CONFIGS[config])
    else:
        try:
            loaded = AutoConfig.from_pretrained(config)
        except Exception as e:  # noqa: BLE001 - OSError / hub errors: one line
            raise ValueError(f'config: {config!r} is neither one of {", ".join(BERT_CONFIGS)} nor a readable '
                             f'Hugging Face config ({str(e).strip().splitlines()[0][:160] if str(e).strip() else e})'
                             ) from None
        if not isinstance(loaded, BertConfig):
            raise ValueError(f'config: {config!r} is a {type(loaded).__name__}, not a BertConfig')
        values = loaded.to_dict()
    for name, value in fields.items():
        if value is None:
            continue
        if name in _INT_FIELDS and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f'{name}: expected a positive int, got {value!r}')
        if name in _FLOAT_FIELDS and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 <= value < 1):
            raise ValueError(f'{name}: expected a probability in [0, 1), got {value!r}')
        values[name] = value
    if tokenizer is not None:
        from recipes.data.text.tokenizer import load_tokenizer

        tok = load_tokenizer(tokenizer, 'model.tokenizer')
        if fields.get('vocab_size') is not None and fields['vocab_size'] < len(tok):
            raise ValueError(f'vocab_size: {fields["vocab_size"]} is smaller than the tokenizer\'s {len(tok)}')
        values['vocab_size'] = fields.get('vocab_size') or len(tok)
        values['pad_token_id'] = tok.pad_token_id
    if values['hidden_size'] % values['num_attention_heads']:
        raise ValueError(f'hidden_size: {values["hidden_size"]} is not a multiple of num_attention_heads '
                         f'({values["num_attention_heads"]})')
    return BertConfig(**values)


def sparse_mlm_class() -> type:
    """``SparseHeadMLM``: Composer's ``HuggingFaceModel`` for a ``BertForMaskedLM`` whose head sees only the masked
    positions (defined on first use, so that importing this module does not import Composer)."""
    global _SPARSE
    if _SPARSE is not None:
        return _SPARSE
    import torch
    from composer.models import HuggingFaceModel
    from transformers.modeling_outputs import MaskedLMOutput

    class SparseHeadMLM(HuggingFaceModel):
        """Forward: encoder on every position, ``model.cls`` on the positions whose label is not -100; the loss is the
        mean cross-entropy over them (what ``BertForMaskedLM`` computes). ``eval_forward`` returns those logits and
        keeps their labels for the metrics; the batch is never modified."""

        forward_uses_labels = True  # a teacher of this class needs the labels to know where to predict

        def forward(self, batch: Any) -> Any:
            inputs = {k: batch[k] for k in ('input_ids', 'attention_mask', 'token_type_ids') if k in batch}
            hidden = self.model.bert(**inputs).last_hidden_state
            labels = batch['labels']
            where = labels != -100
            logits = self.model.cls(hidden[where])
            if where.any():
                loss = torch.nn.functional.cross_entropy(logits.float(), labels[where])
            else:  # no masked position (a tiny batch): no signal, rather than the NaN of an empty mean
                loss = logits.float().sum() * 0.0
            return MaskedLMOutput(loss=loss, logits=logits)

        def eval_forward(self, batch: Any, outputs: Optional[Any] = None) -> Any:
            labels = batch['labels']
            self.labels = labels[labels != -100]
            return (outputs if outputs is not None else self.forward(batch))['logits']

    _SPARSE = SparseHeadMLM
    return _SPARSE


_SPARSE: Optional[type] = None


def bert_mlm(config: str = 'bert-base', tokenizer: Optional[str] = None, vocab_size: Optional[int] = None,
             hidden_size: Optional[int] = None, num_hidden_layers: Optional[int] = None,
             num_attention_heads: Optional[int] = None, intermediate_size: Optional[int] = None,
             max_position_embeddings: Optional[int] = None, hidden_dropout_prob: Optional[float] = None,
             attention_probs_dropout_prob: Optional[float] = None, sparse_head: bool = True) -> Any:
    """A freshly initialised ``BertForMaskedLM`` of :func:`bert_config` in a Composer ``HuggingFaceModel``
    (``use_logits=True``: metrics and distillation read the logits; see ``sparse_head`` in the module docstring)."""
    from composer.metrics.nlp import LanguageCrossEntropy, MaskedAccuracy
    from composer.models import HuggingFaceModel
    from transformers import BertForMaskedLM

    cfg = bert_config(config, tokenizer=tokenizer, vocab_size=vocab_size, hidden_size=hidden_size,
                      num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                      intermediate_size=intermediate_size, max_position_embeddings=max_position_embeddings,
                      hidden_dropout_prob=hidden_dropout_prob,
                      attention_probs_dropout_prob=attention_probs_dropout_prob)
    metrics = [LanguageCrossEntropy(ignore_index=-100), MaskedAccuracy(ignore_index=-100)]
    cls = sparse_mlm_class() if sparse_head else HuggingFaceModel
    return cls(BertForMaskedLM(cfg), metrics=metrics, use_logits=True)
