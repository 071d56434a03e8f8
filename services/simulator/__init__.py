"""Provider simulator: a stand-in for the Gemini image API and Volcengine Ark video API, with injectable faults.

Run it with ``python -m services.simulator``; see ``README.md`` in this folder for the control API.
"""
