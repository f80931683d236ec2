"""SANS-IO: affinity policies decide which backend a request goes to; no sockets, no clocks.

Entry point: ``limpet.affinity.factory.build_policy(spec, secret=..., pool_name=...)``; every
policy has ``pick(facts, snapshot) -> Pick`` (see ``base``). One module per mode: ``none``,
``cookie`` (+ ``tokens``), ``client_ip``, ``hash_key`` (+ ``hashing``: Maglev).
"""
