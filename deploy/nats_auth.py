"""The NATS server's users: one per service that connects, each allowed only what its side of the event path needs.

main (``event_stream.PUBLISHER``) publishes events and creates or updates the stream. communication
(``event_stream.READER``) reads: it looks the stream up, runs its ordered consumer and reads missed events with
direct get, and can neither publish an event nor change or remove a stream. Both receive replies on their inboxes.
The same text is the local server's configuration file and, in compose, the file the ``secrets`` service writes
into the NATS container's secret volume (the server cannot read a password from a file of its own).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from services.shared.event_stream import PUBLISHER, READER
from services.shared.settings import EventStreamSettings, password_variable

# The store name of the derived file (deploy.credentials), read by the NATS server as its configuration.
AUTH_FILE = "NATS_AUTH"
USERS = (PUBLISHER, READER)
PASSWORDS = tuple(password_variable(user) for user in USERS)

_INBOXES = ["_INBOX.>"]
_PERMISSIONS: dict[str, dict[str, dict[str, list[str]]]] = {
    PUBLISHER: {
        "publish": {"allow": [f"{EventStreamSettings.subject_prefix}.>", "$JS.API.>"]},
        "subscribe": {"allow": _INBOXES},
    },
    READER: {
        "publish": {
            "allow": [
                "$JS.API.INFO",
                "$JS.API.STREAM.INFO.*",
                "$JS.API.CONSUMER.CREATE.*",
                "$JS.API.CONSUMER.CREATE.*.>",
                "$JS.API.CONSUMER.INFO.*.*",
                "$JS.API.CONSUMER.DELETE.*.*",
                "$JS.API.DIRECT.GET.*",
                "$JS.API.DIRECT.GET.*.>",
                # The ordered consumer answers the server's flow-control requests.
                "$JS.FC.>",
            ]
        },
        "subscribe": {"allow": _INBOXES},
    },
}


def authorization(secrets: Mapping[str, str]) -> str:
    """The server's ``authorization`` block for the passwords in ``secrets`` (store names, see ``PASSWORDS``)."""
    users = [
        {"user": user, "password": secrets[password_variable(user)], "permissions": _PERMISSIONS[user]}
        for user in USERS
    ]
    # NATS's configuration format reads JSON.
    return json.dumps({"authorization": {"users": users}}, indent=2) + "\n"
