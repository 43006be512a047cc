"""POP3 (RFC 1939) with CAPA (RFC 2449), STLS (RFC 2595) and SASL AUTH (RFC 5034).

``replies``, ``events``, ``commands``, ``body`` and ``protocol`` are the sans-I/O core;
``maildrop`` is the session's snapshot of INBOX, ``locks`` the exclusive maildrop lock, and
``session`` the policy layer that drives the core over a ``net.Connection``.
"""
