"""Learners' recorded answers: kept as WAV through the storage API, heard only by teachers and the
learner who spoke, deleted after the retention period."""

import io
import wave
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from assessments.audio import SAMPLE_RATE
from assessments.models import Learner, Turn
from assessments.services import save_turn_audio
from assessments.tests.factories import make_session_with_assessment

pytestmark = pytest.mark.django_db
PCM = (b"\x10\x00\xf0\xff" * SAMPLE_RATE)[: SAMPLE_RATE * 2]  # one second of PCM16 mono 24 kHz


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    settings.PARLA_RECORD_AUDIO = True
    return tmp_path


@pytest.fixture
def spoken_turn(learner_user):
    session, _ = make_session_with_assessment(learner_user.learner)
    turn = session.turns.get(role=Turn.Role.LEARNER)
    save_turn_audio(turn.pk, PCM)
    turn.refresh_from_db()
    return turn


def test_save_turn_audio_writes_a_wav_of_the_one_format(spoken_turn, media):
    assert spoken_turn.audio.name.endswith(".wav")
    assert (media / spoken_turn.audio.name).is_file()
    with wave.open(spoken_turn.audio.open("rb")) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 24_000)
        assert wav.readframes(wav.getnframes()) == PCM
    spoken_turn.audio.close()


def test_a_second_take_replaces_the_first_file(spoken_turn, media):
    save_turn_audio(spoken_turn.pk, PCM[:4800])
    spoken_turn.refresh_from_db()
    assert list(media.rglob("*.wav")) == [media / spoken_turn.audio.name]  # no orphan left behind
    assert spoken_turn.audio.size == 44 + 4800  # the WAV header and the second take


def test_recording_off_keeps_nothing(settings, learner_user, media):
    settings.PARLA_RECORD_AUDIO = False
    session, _ = make_session_with_assessment(learner_user.learner)
    turn = session.turns.get(role=Turn.Role.LEARNER)
    assert save_turn_audio(turn.pk, PCM) is None
    turn.refresh_from_db()
    assert not turn.audio and not any(media.rglob("*.wav"))


def wav_bytes(response) -> bytes:
    return b"".join(response.streaming_content)


def test_audio_is_served_to_teachers_and_to_its_learner(client, spoken_turn, teacher_user, learner_user):
    url = reverse("assessments:turn_audio", args=[spoken_turn.pk])
    for user in (teacher_user, learner_user):
        client.force_login(user)
        response = client.get(url)
        assert response.status_code == 200 and response["Content-Type"] == "audio/wav"
        assert "no-cache" in response["Cache-Control"] or "no-store" in response["Cache-Control"]
        with wave.open(io.BytesIO(wav_bytes(response))) as wav:
            assert wav.getframerate() == 24_000


def test_audio_is_refused_to_everyone_else(client, spoken_turn, make_user):
    url = reverse("assessments:turn_audio", args=[spoken_turn.pk])
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    other = make_user("otto")
    Learner.objects.create(user=other)
    staff_without_rights = make_user("clerk", is_staff=True)
    for user in (other, staff_without_rights):
        client.force_login(user)
        assert client.get(url).status_code == 404
    # A turn without a recording is a 404 even for its own learner.
    silent = spoken_turn.session.turns.get(role=Turn.Role.TUTOR)
    client.force_login(spoken_turn.session.learner.user)
    assert client.get(reverse("assessments:turn_audio", args=[silent.pk])).status_code == 404


def test_no_public_media_url_serves_the_file(client, spoken_turn, teacher_user, settings):
    client.force_login(teacher_user)
    assert client.get(f"/{settings.MEDIA_URL.strip('/')}/{spoken_turn.audio.name}").status_code == 404


def test_retention_command_deletes_only_expired_audio(spoken_turn, learner_user, media, settings):
    settings.PARLA_AUDIO_RETENTION_DAYS = 30
    old_file = media / spoken_turn.audio.name
    Turn.objects.filter(pk=spoken_turn.pk).update(created_at=timezone.now() - timedelta(days=31))
    session, _ = make_session_with_assessment(learner_user.learner)
    recent = session.turns.get(role=Turn.Role.LEARNER)
    save_turn_audio(recent.pk, PCM)
    recent.refresh_from_db()
    out = io.StringIO()
    call_command("delete_expired_audio", stdout=out)
    assert "deleted 1 audio file(s) older than 30 day(s)" in out.getvalue()
    spoken_turn.refresh_from_db()
    assert not spoken_turn.audio and not old_file.exists()
    assert spoken_turn.text == "Me llamo Ana."  # the transcript stays
    assert Path(media / recent.audio.name).is_file()
    call_command("delete_expired_audio", "--days", "0", stdout=io.StringIO())
    recent.refresh_from_db()
    assert not recent.audio


@pytest.mark.parametrize("recording", [True, False])
def test_tutor_page_tells_the_learner_when_answers_are_recorded(client, learner_user, settings, recording):
    settings.PARLA_RECORD_AUDIO = recording
    settings.PARLA_AUDIO_RETENTION_DAYS = 45
    client.force_login(learner_user)
    html = client.get(reverse("tutor:session")).content.decode()
    notice = "Your spoken answers are recorded so that your teacher can listen to them"
    assert (notice in html) is recording
    assert ("deleted after 45 days" in html) is recording


def test_the_audio_format_is_defined_once_and_stays_django_free():
    import subprocess
    import sys

    code = ("import sys, tutor.realtime.audio as a, assessments.audio as b; "
            "assert 'django.conf' not in sys.modules; assert a.SAMPLE_RATE is b.SAMPLE_RATE and a.BYTES_PER_MS == 48")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


@pytest.mark.parametrize("recording", [True, False])
def test_a_judged_answer_is_stored_whole_in_one_call(settings, learner_user, media, recording):
    """The runtime's one database call per judged answer: final text and fluency, recording, judgement."""
    from assessments import services
    from assessments.models import Probe
    from assessments.rating import Judgement

    settings.PARLA_RECORD_AUDIO = recording
    session, _ = make_session_with_assessment(learner_user.learner)
    turn = session.turns.get(role=Turn.Role.LEARNER)
    judged = Judgement("A2", "sustained", "spoken answer, 1.0 s of speech", "offline", "spoken", {"runs": 1})
    stored = services.store_judged_answer(
        session.pk, turn.pk, judged, final={"text": "", "mode": "spoken", "fluency": {"speaking_ms": 1000}}, audio=PCM
    )
    assert stored == turn.pk
    turn.refresh_from_db()
    assert (turn.text, turn.mode, turn.fluency) == ("", "spoken", {"speaking_ms": 1000})
    assert bool(turn.audio) is recording
    probe = Probe.objects.get(turn=turn)
    assert (probe.level, probe.outcome, probe.evidence, probe.measures) == ("A2", "sustained", judged.evidence, {"runs": 1})

    new = services.store_judged_answer(
        session.pk, None, judged,
        new_turn={"role": "learner", "text": "Vivo en Madrid.", "item_id": "answer_9", "level": "A2", "mode": "written"},
    )
    assert Turn.objects.get(pk=new).text == "Vivo en Madrid." and Probe.objects.filter(turn_id=new).count() == 1
