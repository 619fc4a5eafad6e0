"""The operator's views of a running platform, read from Prometheus's HTTP API: `musdpay status` (a terminal view
for the on-call person) and `musdpay report` (a self-contained HTML report for SLA reviews and credit claims).

Nothing here imports the payment service or the monitor: it reads only what Prometheus holds, so it works the
same against `make run` and against production."""
