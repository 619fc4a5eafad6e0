"""Three-ledger conservation: what Stripe says, what our database recorded, and what moved on the chain agree for
every fulfilled purchase, and every MUSD transfer out of the treasury belongs to exactly one purchase."""
