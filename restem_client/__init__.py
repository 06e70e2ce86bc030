"""The ReST-EM client side: the verifier client (gRPC or in-process), samplers, the
ReST-EM loop, the FSDP fine-tuning script and the `restem` command line.

May import `evals` and `restem_proto` (only `client` uses the stubs); from
`verifier_server`, `wire` (check records to and from protobuf, in `client` only) and
`token_file`, the rest only for in-process verification and `restem serve`.
"""

from importlib.metadata import version

__version__ = version("restem")
