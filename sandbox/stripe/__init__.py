"""Stripe Crypto Onramp emulator: Stripe's /v1 API for onramp sessions, signed webhooks, and a
`/_sandbox/` control API (advance sessions, inject faults, inspect deliveries).

    config.py       EmulatorConfig                      app.py      create_app(config, fulfiller=)
    server.py       run(config), running_emulator(config), serve_in_thread(app)
    api.py          /v1 routes                          control.py  /_sandbox routes
    wire.py         auth, faults, idempotency, Request-Id, error rendering for every /v1 call
    emulator.py     state and operations (create, advance, events)
    sessions.py     session params, object and status machine      pricing.py  fees and quotes
    networks.py     networks, currencies, address formats          forms.py    bracket form parsing
    webhooks.py     endpoints, events, Stripe-Signature            delivery.py background webhook worker
    faults.py       fault settings and seeded randomness           idempotency.py  Idempotency-Key store
    store.py        ordered collections with cursor paging         reversals.py    refunds and disputes
    fulfillment.py  Fulfiller protocol (who sends the crypto)      errors.py   StripeError and its kinds
    ids.py          ids and secrets

It never imports `payment/`: an emulator of Stripe knows nothing of its client.
"""
