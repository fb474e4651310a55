from django import forms

from assessments.models import Learner


class LanguagesForm(forms.ModelForm):
    """The learner's own choice of the language to be placed in, and of their native language."""

    class Meta:
        model = Learner
        fields = ("target_language", "native_language", "feedback_in_native_language")
        labels = {
            "target_language": "I am learning",
            "native_language": "My native language",
            "feedback_in_native_language": "Feedback in my native language (examples stay in the language I am learning)",
        }

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("target_language") and cleaned.get("target_language") == cleaned.get("native_language"):
            raise forms.ValidationError("Choose a language to learn that is not your native language.")
        return cleaned
