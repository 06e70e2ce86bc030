"""Generated gRPC stubs of the verifier contract (proto/restem_proto/v1/verifier.proto).

Do not edit the `*_pb2*` files: `make proto` regenerates them, and a test fails when they
are stale. Server and client both import them from here:

    from restem_proto.v1 import verifier_pb2, verifier_pb2_grpc
"""
