"""Deployment: the Hub layout (:mod:`~uniformer.deploy.hub`), ONNX and ``torch.export`` files
(:mod:`~uniformer.deploy.export`) and a web page (:mod:`~uniformer.deploy.app`, needs the ``app`` extra)."""

from uniformer.deploy.hub import push_to_hub, save_pretrained

__all__ = ["push_to_hub", "save_pretrained"]
