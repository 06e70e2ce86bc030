"""The verifier: math answer checking (`verifier_server.math`, a plain library), exact-match
checking (`exact`), code verdicts through the sandbox, and the gRPC service around them.

Modules: `core` (the `Verifier` on check records: validation, dispatch, caches, pools; used
by the server and in-process, no protobuf), `wire` (records to and from protobuf),
`service` (the gRPC servicer, which translates at its edge, admission, auth interceptor,
metrics), `server` (`restem serve`: TLS, health, reflection, graceful shutdown),
`token_file` (the bearer token both ends read).

May import `sandbox`, the generated stubs in `restem_proto`, and `evals.checks`.
"""
