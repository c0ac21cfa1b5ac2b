"""symnets-deploy: the torch-free runtime for SymNets domain-adapted classifiers.

An edge application imports only this package (plus onnxruntime or tensorrt); training and
export live in the ``train``, ``export`` and ``cli`` subpackages, which need the extras.
"""

__version__ = "0.1.0"
