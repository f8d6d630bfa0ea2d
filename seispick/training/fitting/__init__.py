"""Fitting networks to data: run settings (``config``), the training loop, training and fine-tuning of PhaseNet and
ConvNetQuake, checkpoints, distillation, selection by validation picks, k-fold selection and cross-validation.

``config`` imports no torch (the CLI reads its defaults at start-up), so this ``__init__`` imports nothing.
"""
