"""Hardened execution of untrusted programs.

Backends: warm pools of locked-down Docker containers (`docker`), bubblewrap jails
(`namespace`) for hosts without Docker, and `local` (unsafe, explicit opt-in). Imports the
standard library and the Docker SDK only. The offline base image is built by
`sandbox/image/build-base.sh`.
"""
