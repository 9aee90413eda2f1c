"""paperlib: a Jupyter-first companion to "Strategic Fusion Optimizes Transformer Compression".

Pipeline stages, one module each, data flowing one way:
``data -> models -> train -> signals -> strategies -> pruning -> fusion -> distill -> metrics -> plots``;
``cli`` and ``reproduce`` sit on top.  Heavy optional imports (``datasets``, ``papermill``) stay lazy.
"""

from .errors import PaperlibError

__version__ = "0.1.0"
__all__ = ["PaperlibError", "__version__"]
