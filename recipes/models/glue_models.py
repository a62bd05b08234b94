"""BERT for GLUE fine-tuning, as a Composer model (``model.name: bert_classifier``).

A Hugging Face ``BertForSequenceClassification`` (a classifier on the pooled ``[CLS]`` state; one output and an MSE
loss for STS-B) in Composer's ``HuggingFaceModel``, with its task's metrics (:mod:`recipes.data.text.glue_tasks`) as eval
metrics. ``pretrained`` starts the encoder from a checkpoint of a ``bert_mlm`` run (a Composer checkpoint, loaded with
``weights_only=True``), or of an earlier ``bert_classifier`` run (e.g. MNLI before RTE, MRPC and STS-B); the
classification head (and the pooler, which masked-LM pre-training does not have) starts fresh.

The architecture comes from the checkpoint when it records one (Composer saves the Hugging Face config in every
checkpoint of a ``HuggingFaceModel``), so one fine-tuning recipe serves checkpoints of any size; ``config`` (default
``bert-base``) is used otherwise (a bare state dict, or no checkpoint). Fields given in the recipe override either;
weights that do not fit the architecture are a one-line error naming ``model.pretrained``.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Optional

from algorithms.common.checkpoint_loading import safe_load
from recipes.models.architectures.bert import bert_config
from recipes.data.text.glue_tasks import TASKS, get_task, task_metrics

__all__ = ['bert_classifier', 'encoder_state', 'load_pretrained_encoder', 'checkpoint_config']

log = logging.getLogger(__name__)

# Fields of a checkpoint's BertConfig that fix the shapes and the computation of the encoder.
_ARCH_FIELDS = ('vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size',
                'max_position_embeddings', 'type_vocab_size', 'hidden_act', 'layer_norm_eps', 'pad_token_id',
                'position_embedding_type', 'hidden_dropout_prob', 'attention_probs_dropout_prob')
_ENCODER_PREFIXES = ('model.bert.', 'bert.')  # a Composer HuggingFaceModel's keys, then a bare Hugging Face model's


def _load(path: str) -> Mapping[str, Any]:
    try:
        return safe_load(path)
    except FileNotFoundError:
        raise ValueError(f'pretrained: checkpoint file not found: {path}') from None
    except Exception as e:  # noqa: BLE001 - the weights_only unpickler's refusal or a corrupt file
        raise ValueError(f'pretrained: {path} cannot be loaded with weights_only=True '
                         f'({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ""})') from None


def _model_state(checkpoint: Mapping[str, Any]) -> Mapping[str, Any]:
    state = checkpoint.get('state')
    return state['model'] if isinstance(state, Mapping) and isinstance(state.get('model'), Mapping) else checkpoint


def checkpoint_config(checkpoint: Mapping[str, Any]) -> Optional[dict[str, Any]]:
    """The Hugging Face config a Composer checkpoint of a ``HuggingFaceModel`` records (``None`` if it has none)."""
    try:
        content = checkpoint['state']['integrations']['huggingface']['model']['config']['content']
    except (KeyError, TypeError):
        return None
    return dict(content) if isinstance(content, Mapping) else None


def encoder_state(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The ``BertModel`` weights in a checkpoint (Composer's ``{'state': {'model': ...}}`` or a bare state dict),
    keys relative to the encoder (``embeddings.word_embeddings.weight``, ``encoder.layer.0...``, ``pooler...``)."""
    state = _model_state(checkpoint)
    for prefix in _ENCODER_PREFIXES:
        found = {k[len(prefix):]: v for k, v in state.items() if isinstance(k, str) and k.startswith(prefix)}
        if found:
            return found
    return {}


def load_pretrained_encoder(bert: Any, checkpoint: Mapping[str, Any], path: str) -> list[str]:
    """Copy the checkpoint's encoder weights into ``bert`` (a ``BertModel``); returns the keys left fresh (the pooler
    when the checkpoint is a masked LM's). A ValueError (one line, naming ``pretrained``) when the checkpoint has no
    encoder, misses weights other than the pooler's, or holds tensors of other shapes."""
    weights = encoder_state(checkpoint)
    if not weights:
        keys = list(_model_state(checkpoint))[:3]
        raise ValueError(f'pretrained: {path} holds no BERT encoder weights (keys starting with model.bert. or '
                         f'bert.; it has {", ".join(map(str, keys)) or "none"}...)')
    own = bert.state_dict()
    wrong = [k for k, v in weights.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        raise ValueError(f'pretrained: {path} does not fit the model: {k} is {tuple(weights[k].shape)} in the '
                         f'checkpoint and {tuple(own[k].shape)} here (set model.config or its fields to the '
                         "pre-training run's)")
    result = bert.load_state_dict(weights, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith('pooler.')]
    if missing or result.unexpected_keys:
        what = f'lacks {missing[0]}' if missing else f'has {result.unexpected_keys[0]}, which the model has not'
        raise ValueError(f'pretrained: {path} does not fit the model: it {what}')
    return list(result.missing_keys)


def bert_classifier(config: str = 'bert-base', task: Optional[str] = None, num_labels: Optional[int] = None,
                    pretrained: Optional[str] = None, tokenizer: Optional[str] = None,
                    vocab_size: Optional[int] = None, hidden_size: Optional[int] = None,
                    num_hidden_layers: Optional[int] = None, num_attention_heads: Optional[int] = None,
                    intermediate_size: Optional[int] = None, max_position_embeddings: Optional[int] = None,
                    hidden_dropout_prob: Optional[float] = None,
                    attention_probs_dropout_prob: Optional[float] = None) -> Any:
    """``BertForSequenceClassification`` for GLUE ``task`` in a Composer ``HuggingFaceModel`` (``use_logits=True``).

    Args:
        config: a size of ``recipes.models.architectures.bert.BERT_CONFIGS`` or a Hugging Face config name/path, used when
            ``pretrained`` records no config (a bare state dict, or no checkpoint): a Composer checkpoint's own
            architecture always wins, so one recipe fine-tunes checkpoints of any size.
        task: the GLUE task (``sst2``, ``mnli``, ...): its number of labels and metrics.
        num_labels: must equal the task's if given (1 for STS-B).
        pretrained: a Composer checkpoint of a ``bert_mlm`` (or ``bert_classifier``) run, or a bare state dict:
            its encoder weights are loaded (``weights_only=True``); the head starts fresh.
        tokenizer: sets ``vocab_size`` from a tokenizer (see ``bert_config``).
        vocab_size .. attention_probs_dropout_prob: override the config's fields.

    Raises ValueError (one line naming the option) for an unknown task, a ``num_labels`` that differs from the task's,
    or a checkpoint that is missing, unsafe, or does not fit.
    """
    from composer.models import HuggingFaceModel
    from transformers import BertForSequenceClassification

    if task is None:
        raise ValueError(f'task: required (one of {", ".join(TASKS)})')
    glue_task = get_task(task)
    if num_labels is not None and num_labels != glue_task.num_labels:
        raise ValueError(f'num_labels: {num_labels} does not fit task {glue_task.name}, which has '
                         f'{glue_task.num_labels}')
    fields = dict(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                  num_attention_heads=num_attention_heads, intermediate_size=intermediate_size,
                  max_position_embeddings=max_position_embeddings, hidden_dropout_prob=hidden_dropout_prob,
                  attention_probs_dropout_prob=attention_probs_dropout_prob)
    checkpoint = _load(pretrained) if pretrained is not None else None
    saved = checkpoint_config(checkpoint) if checkpoint is not None else None
    if saved is not None:  # the pre-training run's architecture; the recipe's fields still override it
        base = {k: saved[k] for k in _ARCH_FIELDS if k in saved}
        given = {k: v for k, v in fields.items() if v is not None}
        cfg = bert_config('bert-base', tokenizer=tokenizer, **{**base, **given})
    else:
        cfg = bert_config(config, tokenizer=tokenizer, **fields)
    cfg.num_labels = glue_task.num_labels
    cfg.problem_type = 'regression' if glue_task.is_regression else 'single_label_classification'
    module = BertForSequenceClassification(cfg)
    if checkpoint is not None:
        fresh = load_pretrained_encoder(module.bert, checkpoint, str(pretrained))
        log.info('bert_classifier: encoder loaded from %s (fresh: classifier%s)', pretrained,
                 ', pooler' if fresh else '')
    return HuggingFaceModel(module, metrics=task_metrics(glue_task), use_logits=True)
