"""Offline PyTorch package: PhaseNet and ConvNetQuake, datasets, training, evaluation and ONNX export.

By concern: ``data/`` (dataset folders, samples, validation, splits and folds, labels, augmentation, synthetic
waveforms), ``networks/`` (the PyTorch networks and the numpy reference of the original PhaseNet), ``fitting/``
(run settings, the training loop, training and fine-tuning, checkpoints, selection, cross-validation),
``evaluation/`` (scoring through the models/ runtime, P/R/F1 scores, figures), ``export/`` (ONNX model folders,
weight converters, cards, licences) and ``recipes/`` (the builds of the shipped models). The layers are declared
in ``.importlinter``; only the CLI's training commands import this package, lazily.
"""
