"""What runs inside each jail: the executor, its seccomp filter, the typed value codec, and
the runner of a request's test code.

These files are copied into the sandbox image (or bound read-only into a bubblewrap jail)
and run there as plain scripts, so they import the standard library and each other only.
The trusted side imports `sandbox.jail.values` to decode what comes out.
"""
