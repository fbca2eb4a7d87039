"""DIAMOND's own checkpoints: the format, ``python -m training.diamond.importer`` and ``.exporter``.
"""
