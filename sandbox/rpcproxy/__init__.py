"""A JSON-RPC fault proxy: forwards JSON-RPC (single and batch) to an upstream node and injects, on demand,
what real providers do wrong: latency, 5xx, 429, JSON-RPC errors, requests held until the client gives up,
a stalled head, a wrong chain id, dropped connections, and being down.

    config.py    ProxyConfig                        faults.py   Faults (validation), Injector (seeded rates)
    proxy.py     RpcProxy: forwarding and faults    stats.py    per-method and per-fault counters
    control.py   the /_proxy/ control API           server.py   ProxyServer, run(config), running_proxy()

It never imports `payment/`.
"""
