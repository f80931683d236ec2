"""Channel events for the application (``--events-url``), SANS-IO: the records and the retry
schedule. The queue lives in the broker (``limpet.hub.brokers.*``); delivery is
``limpet.hub.notifier``."""
