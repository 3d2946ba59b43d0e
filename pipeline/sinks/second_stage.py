"""The second-stage check the review policy asks for (`review.verifier`, `min_check_score`).

A dispatcher must be able to trust an auto-submitted case. Where `min_check_score` is set, a new
case goes out on its own only when a small classifier on its crop (`models/verifier.py`, trained
by `citypatrol verifier train` from reviewers' decisions) scores it a real problem; otherwise a
reviewer decides. This module turns the config into that check, once, for the batch runner, the
live runner and the casekeeper alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from citypatrol.pipeline.config.models import Category, ReviewConfig
from citypatrol.pipeline.types import Case

log = logging.getLogger("citypatrol.review")

Check = Callable[[Case, np.ndarray], "float | None"]


class VerifierUnavailable(RuntimeError):
    """`review.verifier` names a file that cannot be used; the message says which and why."""


def load_check(review: ReviewConfig) -> Check | None:
    """The configured verifier's check, or None when none is configured.

    Raises VerifierUnavailable for a missing or unreadable file, so a runner stops at start-up
    instead of holding every case for a reason nobody sees.
    """
    if review.verifier is None:
        if review.wants_check():
            log.warning("review: min_check_score is set but no review.verifier is configured: "
                        "every case it applies to is held for a reviewer")  # fmt: skip
        return None
    from citypatrol.models.verifier import CropVerifier

    path = review.verifier
    if not path.is_file():
        raise VerifierUnavailable(f"review.verifier: no such file {path}")
    try:
        verifier = CropVerifier.load(path)
    except Exception as exc:  # numpy raises many kinds for a file that is not its .npz (BadZipFile, …)
        raise VerifierUnavailable(f"review.verifier: {path} is not a citypatrol verifier: {type(exc).__name__}: {exc}") from None
    checked = [c.value for c in Category if verifier.checks(c)]
    log.info("review: second-stage verifier %s checks %s", path.name, ", ".join(checked) or "no category")
    if not review.wants_check():
        log.warning("review: a verifier is configured but no min_check_score uses its score")
    return verifier.check


def check_score(check: Check | None, case: Case, image: np.ndarray | None) -> float | None:
    """`check`'s score of `case` on `image`; None (the policy holds the case) when there is no
    check or image, or the check fails: a failing check never costs a case."""
    if check is None or image is None:
        return None
    try:
        return check(case, image)
    except Exception as exc:
        log.error("case %s: second-stage check failed: %s", case.case_id, exc)
        return None
