"""Capture receivers: local stand-ins for Slack incoming webhooks, Discord webhooks, PagerDuty Events API v2 and an
SMTP server. Each validates what it receives against the service's documented format and keeps it, for dev mode
(`musdpay sandbox receivers`) and tests (`running_receivers`)."""
