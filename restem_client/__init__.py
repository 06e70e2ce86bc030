"""The ReST-EM client side: the verifier client (gRPC or in-process), samplers, the
ReST-EM loop, the FSDP fine-tuning script and the `restem` command line.

May import `evals` and `restem_proto`; `verifier_server` only for in-process verification.
"""

from importlib.metadata import version

__version__ = version("restem")
