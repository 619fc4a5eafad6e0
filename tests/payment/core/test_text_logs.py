"""The text log format (`MUSDPAY_LOG_FORMAT=text`, what `musdpay dev` shows on a terminal): one readable line per
record, redacted like the JSON lines."""

from __future__ import annotations

import io
import logging
import re

from payment.core.logs import configure_logging


def test_text_lines_are_readable_and_redacted() -> None:
    stream = io.StringIO()
    configure_logging("INFO", json_output=False, stream=stream)
    try:
        log = logging.getLogger("musdpay.test.text")
        log.info("calling Stripe with sk_test_abc123DEF", extra={"provider": "spectrum", "url": "https://u:pw@x/"})
        try:
            raise RuntimeError("Bearer eyJhbGciOi.secret.token")
        except RuntimeError:
            log.exception("failed")
    finally:
        configure_logging("INFO")
    first, *rest = stream.getvalue().splitlines()
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d\.\d{3} INFO    musdpay\.test\.text: calling Stripe with sk_test_\[REDACTED\]"
        r"  provider=spectrum url=https://u:\[REDACTED\]@x/",
        first,
    ), first
    text = "\n".join(rest)
    assert "ERROR   musdpay.test.text: failed" in text
    assert "RuntimeError: Bearer [REDACTED]" in text
    assert "eyJhbGciOi" not in stream.getvalue()
    assert "abc123DEF" not in stream.getvalue()
    assert "pw@" not in stream.getvalue()
