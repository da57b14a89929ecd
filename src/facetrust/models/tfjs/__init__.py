"""Run TensorFlow.js graph models (``model.json`` + weight shards) as differentiable torch modules.

>>> from facetrust.models.tfjs import load_tfjs_graph
>>> net = load_tfjs_graph("model.json")   # doctest: +SKIP
"""

from facetrust.models.tfjs.graph import TfjsGraph, load_tfjs_graph, repair_prelu_fusion

__all__ = ["TfjsGraph", "load_tfjs_graph", "repair_prelu_fusion"]
