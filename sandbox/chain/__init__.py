"""A local stand-in for the Mezo chain: anvil (from the project's node_modules) with chain id 31611, the MUSD
token deployed from contracts/MUSD.sol, and a treasury funded with MUSD and BTC (the native currency).

    config.py        ChainConfig, Mezo chain ids, the dev keys
    anvil.py         find_anvil(), start_anvil(): the binary from @foundry-rs/anvil, its process
    artifact.py      the committed MUSD artifact (ABI, bytecode) built by contracts/compile.js
    transactions.py  connect(), Sender: signing with local keys, thread-safe nonces, receipts
    musd.py          MusdClient (balances, transfers, mints, Transfer events), to_units()
    local.py         LocalChain, start_chain(config), running_chain(): start, deploy, fund
    fulfillment.py   ChainFulfiller: the Stripe emulator's Fulfiller, paying buyers real MUSD
    server.py        run(config): `musdpay sandbox chain`

It never imports `payment/`.
"""
