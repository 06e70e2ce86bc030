"""The verifier: math answer checking (`verifier_server.math`, a plain library), exact-match
checking, code verdicts through the sandbox, and the gRPC service around them.

May import `sandbox` and the generated stubs in `restem_proto`.
"""
