"""Docker for CI and hosts without a container registry: start an engine, build every image of the stack locally.

Not part of the product: the wheel and the application image leave this package out. Run it from a clone as
`./dev images` or `python -m offline_docker` (see offline_docker/README.md).
"""
