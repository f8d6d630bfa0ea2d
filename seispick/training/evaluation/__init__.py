"""Evaluation of shipped-style models on labelled samples through the models/ runtime: P/R/F1 and detection
scores (``scores``), reports and figures."""
