"""The hub's calls into the application (``--hook-url``): connect, subscribe, publish and rpc.

SANS-IO parts: ``signing`` (the HMAC every hook and event request carries), ``answers`` (what
the application's answer means), ``breaker`` (the circuit breaker's state machine) and ``cache``
(subscribe decisions kept while a client stays connected). The HTTP client is ``limpet.hub.caller``.
"""
