"""communication: keeps websocket connections with frontends and pushes the events backends publish to them.

It holds no business logic. A backend holding the internal token publishes ``{channel, event}``; every socket
subscribed to that channel receives the event. A frontend connects with a short-lived token from main and is
subscribed to its own user channel.
"""
