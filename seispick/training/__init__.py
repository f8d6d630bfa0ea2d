"""Offline PyTorch package: PhaseNet and ConvNetQuake, datasets, training, evaluation and ONNX export."""
