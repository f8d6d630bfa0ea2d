"""ONNX model folders: export with a parity check, converters of the original and SeisBench weights (including
pickled modules), builders of shipped-style folders, model cards and licence texts."""
