"""A run's teacher registry on a CIFAR ResNet-8 teacher checkpoint, for the tests of the YAML factories."""

from __future__ import annotations

import torch


def resnet_registry(tmp_path, student: str = 'cifar_resnet8'):
    """``(registry, teacher specs)``: a student of ``student`` on 1x16x16 inputs and one saved ResNet-8 teacher."""
    from recipes.core.teachers import TeacherRegistry
    from recipes.models import registry as models

    torch.manual_seed(0)
    teacher = models.build_model('cifar_resnet8', num_classes=10, in_channels=1)
    path = tmp_path / 'teacher.pt'
    torch.save({'state': {'model': teacher.state_dict()}}, path)
    cfg = {'name': student, 'num_classes': 10, 'in_channels': 1}
    registry = TeacherRegistry(default_model=cfg, student=models.build_model(**cfg), input_shape=(1, 16, 16))
    return registry, [{'checkpoint': str(path), 'model': {'name': 'cifar_resnet8', 'num_classes': 10,
                                                           'in_channels': 1}}]
