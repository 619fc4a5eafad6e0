"""Stripe reconciliation: bring sessions to Stripe's truth when webhooks are late or lost."""
