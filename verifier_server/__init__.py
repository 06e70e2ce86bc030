"""The verifier: math answer checking (`verifier_server.math`, a plain library), exact-match
checking (`exact`), code verdicts through the sandbox, and the gRPC service around them.

Modules: `core` (the `Verifier`: validation, dispatch, caches, pools; used by the server and
in-process), `service` (the gRPC servicer, admission, auth interceptor, metrics), `server`
(`restem serve`: TLS, health, reflection, graceful shutdown).

May import `sandbox` and the generated stubs in `restem_proto`.
"""
