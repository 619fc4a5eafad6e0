"""Authentication and authorisation: who is calling, and what their role may do.

Modules (docs/security.md explains the choices)::

    principal.py   Principal and Role: the caller, as routes and middleware see it
    errors.py      the 401/403 problems every refusal is (never a 500)
    tokens.py      access JWTs: HS256 pinned, keys named by `kid` for rotation
    siwe.py        EIP-4361 messages: a strict parser and the checks of domain, URI, chain and times
    signatures.py  ECDSA recovery and EIP-1271 `isValidSignature` through an injected `eth_call`
    apikeys.py     `mpk_` API keys: create, verify, rotate with a grace period, revoke, list
    signin.py      sign-in: nonces, verification, refresh-token rotation with reuse detection, logout
    audit.py       the audit log, written in the transaction of the action it records
    runtime.py     the keyring and the `eth_call` of one application, built from the settings
    rbac.py        `require_roles`, the policy of every route, and the guard that enforces them
    schemas.py     request and response bodies
    views.py       /api/v1/auth/*, /api/v1/admin/* and `install_auth`

Request authentication itself (headers to Principal) is `payment.deps.get_principal`.
"""
