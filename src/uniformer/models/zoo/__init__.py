"""The model zoo: every released UniFormer as data, one module per family.

``schema`` (what an entry holds), ``datasets`` (class counts and normalisation), ``image``, ``video``,
``segmentation``, ``pose``, ``detection``, ``light`` (the entries and the builder of each kind), ``catalog`` (lookup by name),
``tables`` (the Markdown / text table). This package imports nothing itself, so that a model module may read the
dataset table without loading the zoo that builds it.
"""
