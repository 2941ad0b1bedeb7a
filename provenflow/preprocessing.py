"""Where pickled models find ``DateFeatures`` (``provenflow.preprocessing.DateFeatures``): the class
lives in ``provenflow.modeling.preprocessing``; this name is part of every stored model's bytes."""

from provenflow.modeling.preprocessing import DateFeatures

__all__ = ["DateFeatures"]
