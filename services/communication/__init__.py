"""communication: keeps websocket connections with frontends and pushes the events backends publish to them.

It holds no business logic. main, holding the publish token, publishes ``{channel, event}`` on the internal
listener; every socket subscribed to that channel receives the event. A frontend connects with a short-lived
token from main and is subscribed to its own user channel.
"""
