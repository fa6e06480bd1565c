"""The one way the marker swallows its own errors: whatever fails, never raise into the app.

The marker runs inside the user's process, in their requests, drivers and server. A failure
of its own (a driver that changed shape, a closed stderr, a full ring) must cost at most the
event it was recording, never the app's request or start-up.
"""

from __future__ import annotations

import contextlib

#: ``with never_raise:`` runs marker code whose failure must not reach the app. One shared,
#: stateless instance (``contextlib.suppress`` keeps no state between uses), so it is
#: re-entrant, thread-safe and costs no allocation per statement.
never_raise = contextlib.suppress(Exception)
