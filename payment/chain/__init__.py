"""The Mezo chain from the payment service's side: providers, failover, typed calls.

    urls.py     redact_url(): an RPC URL without its API key (path, query or userinfo), for logs and labels
    errors.py   RpcError and RpcErrorKind: every failure classified, retryable or not
    pool.py     ProviderPool: providers in settings order, health polls, sticky primary with hysteresis,
                failover on retryable errors, a span and metrics per call (shared by the API and the monitor)
    client.py   ChainClient: typed helpers over the pool (receipts, nonces, balances, ERC-20 balance, sends)

Nothing here imports the API routes, `monitor/` or `sandbox/`.
"""
