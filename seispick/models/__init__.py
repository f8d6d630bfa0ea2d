"""The models contract: model cards, ONNX runtime sessions, continuous annotation and pick extraction.

Nothing here imports torch: the service and the CLI run from an install without it.
"""
