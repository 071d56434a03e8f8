"""Provider simulator: stand-ins for the Gemini image API and the Volcengine Ark video API (one module each in
``providers/``), with injectable faults.

Run it with ``python -m services.simulator``; see ``README.md`` in this folder for the control API and for how to
add a stand-in.
"""
