"""communication: keeps websocket connections with frontends and pushes task events to them.

It holds no business logic and no state of its own: every replica reads the task-event stream (NATS JetStream,
written by main's outbox relay) and delivers each event to its own sockets of that event's user. A frontend
connects with a short-lived token from main, is subscribed to its own user's events, and may resume after a
reconnect with ``since=<seq>``.
"""
