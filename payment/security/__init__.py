"""Edge security of the payment API: rate limits, request body limits, security headers, secret scrubbing.

Everything here is plain ASGI or plain Python, installed by `payment.api.create_app`; see docs/security.md.
"""
