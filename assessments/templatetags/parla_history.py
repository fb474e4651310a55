"""What the learner's history says about an assessment's status (the admin's wording is for teachers:
"Delivery failed (shown as text)" reads as a fault to a learner who only left early)."""

from django import template

from assessments.models import Assessment

register = template.Library()

S = Assessment.Status
LEARNER_STATUS = {
    S.PENDING: "Being graded",
    S.GRADED: "Graded",
    S.DELIVERED: "Graded and read out to you",
    S.DELIVERY_FAILED: "Graded (shown as text)",
    S.NOT_RATED: "Not rated: too few answers for a level",
}


@register.filter
def learner_status(assessment) -> str:
    if assessment.partial and assessment.level:
        return "Provisional: the session ended before your ceiling was found"
    if assessment.partial:
        return "Not rated: the session ended before there were enough answers"
    return LEARNER_STATUS.get(assessment.status, assessment.get_status_display())
