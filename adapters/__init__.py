"""Adapters: agent frameworks' session stores as sessionspec targets.

One module per store, each a target of its own (``sessionspec check
sessionspec.adapters.adk_sqlite:factory``) with the backdoor hooks its backend allows.
The suite reads hooks per module, so a module never mixes an embedded store with a
server-backed one. Each module's docstring says what the framework does natively, what
the adapter had to emulate, and what is out of scope. The frameworks are optional
extras (``pip install sessionspec[adapters]``).
"""

STORES = (
    "adk_memory",
    "adk_sqlite",
    "adk_postgres",
    "agents_sqlite",
    "agents_redis",
    "agents_sqlalchemy",
    "langgraph_memory",
    "langgraph_postgres",
)
"""Every adapter module, in the order the compatibility matrix lists them."""
