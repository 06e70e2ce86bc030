"""Version 1 of the verifier contract (package restem.verifier.v1)."""
