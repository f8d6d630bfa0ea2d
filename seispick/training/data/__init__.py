"""Training data: dataset folders read into samples, validation, splits and cross-validation folds, labels,
augmentation, detector samples, torch datasets of picking and detection windows, synthetic waveforms."""
